// LanguageModel.remote against a real `torchsight serve` (a child process on 127.0.0.1, port 0):
// every result equals the same code run on a local copy of the same model folder, to the exact
// value (the local path is itself checked against eager PyTorch in tutorials.test.ts and
// serve-api.test.ts). Also: the tree and tokenizer with no weights here, errors naming the
// user's line, abort cancelling on the server, jobs and reattaching, 429 retries, quiet.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import type { ChildProcess } from 'node:child_process';
import { LanguageModel, Tensor, type TokenEvent } from '../src/index.js';
import { encodeRequest } from '../src/remote/envelope.js';
import { recordGenerate } from '../src/serve/runner.js';
import { MODELS, spawnServe } from './serve-helpers.js';

let local: LanguageModel;
let remote: LanguageModel;
let server: { child: ChildProcess; url: string; exited: Promise<number | null> };

beforeAll(async () => {
  // --concurrency 1: a key's second request waits its turn with 429 and Retry-After (the retry test)
  server = await spawnServe([MODELS.gpt2, '--port', '0', '--concurrency', '1', '--log-level', 'warn']);
  local = await LanguageModel.load(MODELS.gpt2);
  remote = await LanguageModel.remote(server.url, 'gpt2', { quiet: true, backoffMs: 50 });
}, 120_000);
afterAll(async () => {
  server?.child.kill('SIGTERM');
  await server?.exited;
  await local?.dispose();
});

const same = (a: unknown, b: unknown) => {
  expect(a).toBeInstanceOf(Tensor);
  expect((a as Tensor).shape).toEqual((b as Tensor).shape);
  expect((a as Tensor).dtype).toBe((b as Tensor).dtype);
  expect(Array.from((a as Tensor).data() as Float32Array)).toEqual(Array.from((b as Tensor).data() as Float32Array));
};

describe('a remote model is a LanguageModel with no weights here', () => {
  it('has the module tree, paths, manifest and tokenizer of the served model', () => {
    expect(String(remote)).toBe(String(local));
    expect(remote.modulePaths()).toEqual(local.modulePaths());
    expect(remote.manifest).toEqual(local.manifest);
    expect(remote.tokenizer.encode('The Eiffel Tower is in')).toEqual(local.tokenizer.encode('The Eiffel Tower is in'));
    expect(remote.padId).toBe(local.padId);
    expect(() => remote.native).toThrow(/remote model/);
  });

  it('refuses a model the server does not serve', async () => {
    await expect(LanguageModel.remote(server.url, 'nope', { quiet: true })).rejects.toMatchObject({ status: 404 });
  });
});

describe('traces run on the server and equal local', () => {
  it('tutorial 1: activations of every layer and the logits', async () => {
    const fn = (m: any) => ({ acts: m.transformer.h.map((b: any) => b.output[0]), logits: m.output.logits });
    const r = (await remote.trace('The Eiffel Tower is in the city of', fn)) as any;
    const l = (await local.trace('The Eiffel Tower is in the city of', fn)) as any;
    expect(r.acts.length).toBe(12);
    r.acts.forEach((a: Tensor, i: number) => same(a, l.acts[i]));
    same(r.logits, l.logits);
  });

  it('a patch: zeroing a layer\'s output, the logits after it', async () => {
    const fn = (m: any) => {
      m.transformer.h[3].output[0].index('..., 0:8').fill_(0);
      return { h: m.transformer.h[5].output[0].save(), logits: m.output.logits.save() };
    };
    const r = (await remote.trace('The cat sat on the mat', fn)) as any;
    const l = (await local.trace('The cat sat on the mat', fn)) as any;
    same(r.h, l.h);
    same(r.logits, l.logits);
  });

  it('cross-prompt invokes: one prompt\'s activations patched into another in the same forward', async () => {
    const fn = (tracer: any) => {
      let clean: any;
      tracer.invoke('The Eiffel Tower is in the city of', (m: any) => {
        clean = m.transformer.h[6].output[0].index('0, -1').save();
      });
      return tracer.invoke('The Colosseum is in the city of', (m: any) => {
        m.transformer.h[6].output[0].index('0, -1').copy_(clean);
        return m.output.logits.index('0, -1').save();
      });
    };
    same(await remote.trace(fn), await local.trace(fn));
  });

  it('a session: a value from one trace used in the next, one request', async () => {
    const session = (s: any) => {
      const h = s.trace('Paris is the capital of', (m: any) => m.transformer.h[2].output[0].index('0, -1').save());
      const logits = s.trace('Rome is the capital of', (m: any) => {
        m.transformer.h[2].output[0].index('0, -1').copy_(h);
        return m.output.logits.save();
      });
      return { h, logits };
    };
    const r = (await remote.session(session)) as any;
    const l = (await local.session(session)) as any;
    same(r.h, l.h);
    same(r.logits, l.logits);
  });

  it('model.trace(input, fn, { remote }) on a local model sends that trace to the server', async () => {
    const fn = (m: any) => m.transformer.h[1].output[0].add(1).save();
    same(await local.trace('Hello there', fn, { remote: server.url, quiet: true }), await local.trace('Hello there', fn));
    // the server's name defaults to the folder's; another name is given with { model }
    await expect(local.trace('Hello', fn, { remote: server.url, model: 'other', quiet: true })).rejects.toMatchObject({ status: 404 });
  });
});

describe('generation', () => {
  it('steered generation streams its tokens through onToken and equals local', async () => {
    const steer = Tensor.from(Array.from({ length: 64 }, (_, i) => Math.sin(i) * 4));
    const fn = (m: any, gen: any) => {
      gen.all((mm: any) => mm.transformer.h[4].output[0].add_(steer));
      return { first: m.output.logits.save() };
    };
    const re: TokenEvent[] = [];
    const le: TokenEvent[] = [];
    const r = (await remote.generate('Once upon a time', { maxNewTokens: 10, onToken: (e) => re.push(e) }, fn)) as any;
    const l = (await local.generate('Once upon a time', { maxNewTokens: 10, onToken: (e) => le.push(e) }, fn)) as any;
    expect(r.tokens).toEqual(l.tokens);
    expect(r.text).toBe(l.text);
    expect(r.steps).toBe(l.steps);
    expect(re).toEqual(le);
    same(r.first, l.first);
    // the stream form too
    const events: TokenEvent[] = [];
    const s = remote.stream('Once upon a time', { maxNewTokens: 10 }, fn);
    for await (const e of s) events.push(e);
    expect(events).toEqual(le);
    expect(((await s.result) as any).tokens).toEqual(l.tokens);
  });

  it('an aborted signal rejects with its reason and cancels the request on the server', async () => {
    const ac = new AbortController();
    let seen = 0;
    const reason = new Error('user stopped');
    const pending = remote.generate('A long story:', {
      maxNewTokens: 110,
      signal: ac.signal,
      onToken: () => {
        if (++seen === 2) ac.abort(reason);
      },
    });
    await expect(pending).rejects.toBe(reason);
    expect(seen).toBeLessThan(110);
    // the server stopped it: nothing left running, and the key's one slot is free again
    const deadline = Date.now() + 10_000;
    let health: any;
    do {
      health = await (await fetch(`${server.url}/v1/health`)).json();
      if (health.running === 0 && health.queued === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    } while (Date.now() < deadline);
    expect(health).toMatchObject({ running: 0, queued: 0 });
    const fn = (m: any) => m.output.logits.save();
    same(await remote.trace('after', fn), await local.trace('after', fn));
  });
});

describe('errors', () => {
  it('a failing node comes back as the error a local trace gives, naming the user\'s line', async () => {
    const bad = (m: any) => m.transformer.h[1].output[0].add_(Tensor.from([1, 2, 3])).save();
    const le = (await local.trace('Hi', bad).catch((e) => e)) as Error;
    const re = (await remote.trace('Hi', bad).catch((e) => e)) as Error;
    expect(le.message).toMatch(/remote-client\.test\.ts:\d+:\d+/);
    expect(re.message).toBe(le.message);
    // the model is still usable
    const fn = (m: any) => m.output.logits.save();
    same(await remote.trace('Hi', fn), await local.trace('Hi', fn));
  });

  it('a recording error throws before anything is sent, as locally', async () => {
    const bad = (m: any) => m.transformer.nope.output;
    const le = (await local.trace('Hi', bad).catch((e) => e)) as Error;
    const re = (await remote.trace('Hi', bad).catch((e) => e)) as Error;
    expect(re.message).toBe(le.message);
  });
});

describe('jobs', () => {
  it('{ blocking: false } returns the job at once; model.job(id) reattaches from another remote model', async () => {
    const fn = (m: any) => ({ h: m.transformer.h[7].output[0].save(), logits: m.output.logits.save() });
    const job = await remote.trace('Jobs are data too', fn, { blocking: false });
    expect(typeof job.id).toBe('string');
    expect(['received', 'queued', 'running', 'done']).toContain((await job.status()).state);
    const l = (await local.trace('Jobs are data too', fn)) as any;
    const r = (await job.result()) as any;
    same(r.h, l.h);
    same(r.logits, l.logits);
    expect((await job.status()).state).toBe('done');
    // another process would do the same: a second remote model, the job by id
    const other = await LanguageModel.remote(server.url, 'gpt2', { quiet: true });
    const again = await other.job(job.id).result();
    // recorded elsewhere, it gives the saved values by node id, in the order they were recorded
    const values = [...again.saved.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
    expect(values.length).toBe(2);
    same(values[0], l.h);
    same(values[1], l.logits);
  });

  it('a non-blocking generation and a failing job', async () => {
    const job = await remote.generate('Once upon a', { maxNewTokens: 6, blocking: false });
    const l = await local.generate('Once upon a', { maxNewTokens: 6 });
    const r = await job.result();
    expect(r.tokens).toEqual(l.tokens);
    expect(r.text).toBe(l.text);
    const bad = (m: any) => m.transformer.h[1].output[0].add_(Tensor.from([1, 2, 3])).save();
    const failing = await remote.trace('Hi', bad, { blocking: false });
    const le = (await local.trace('Hi', bad).catch((e) => e)) as Error;
    expect(((await failing.result().catch((e) => e)) as Error).message).toBe(le.message);
  });

  it('a 429 with Retry-After is retried until the server takes the request', async () => {
    // the key's one slot (--concurrency 1) is held by a long generation
    // (without the key/value cache each step recomputes the sequence: it holds the slot longer)
    const long = await remote.generate('Count:', { maxNewTokens: 120, useCache: false, blocking: false });
    const refused = await fetch(`${server.url}/v1/models/gpt2/trace`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-torchsight' },
      body: await encodeRequest(recordGenerate(local, 'x', { maxNewTokens: 1 }).request),
    });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await refused.arrayBuffer();
    const fn = (m: any) => m.output.logits.save();
    const patient = await LanguageModel.remote(server.url, 'gpt2', { quiet: true, retries: 60, backoffMs: 50 });
    same(await patient.trace('waited', fn), await local.trace('waited', fn));
    expect((await long.status()).state).toBe('done');
  });
});

describe('the status line', () => {
  it('shows the job as it goes unless quiet', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const loud = await LanguageModel.remote(server.url, 'gpt2', { statusStream: sink });
    const fn = (m: any) => m.output.logits.save();
    same(await loud.trace('loud', fn), await local.trace('loud', fn));
    const text = lines.join('');
    expect(text).toMatch(/job \S+: (received|queued|running)/);
    expect(text).toMatch(/job \S+: done/);
    lines.length = 0;
    await loud.trace('hush', fn, { quiet: true });
    expect(lines.join('')).toBe('');
  });
});
