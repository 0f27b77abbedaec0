// torchsight serve, in process on 127.0.0.1 (port 0): the tutorials through the server equal the
// same code run locally (and eager PyTorch), generation streams its tokens, every error status,
// limits, the job lifecycle, cancellation, batching of concurrent clients, and a fuzz of
// malformed and mutated requests that never gets a 5xx.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { encodeRequest } from '../src/remote/envelope.js';
import { RemoteClient, RemoteError, sendRecorded, type JobStatusEvent } from '../src/remote/client.js';
import { recordGenerate, recordTrace } from '../src/serve/runner.js';
import type { RunningServer } from '../src/serve/server.js';
import { expectClose, oracle, py } from './helpers.js';
import { clientOf, MODELS, remoteGenerate, remoteSession, remoteTrace, serveGpt2, serverLogs } from './serve-helpers.js';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

let model: LanguageModel;
let server: RunningServer;
let client: RemoteClient;

beforeAll(async () => {
  model = await LanguageModel.load(MODELS.gpt2);
  server = await serveGpt2();
  client = clientOf(server);
});
afterAll(async () => {
  await server?.close();
  await model?.dispose();
});

const same = (a: Tensor, b: Tensor) => {
  expect(a.shape).toEqual(b.shape);
  expect(Array.from(a.data() as Float32Array)).toEqual(Array.from(b.data() as Float32Array));
};

async function raw(path: string, init: RequestInit = {}) {
  return fetch(server.url + path, init);
}

describe('models', () => {
  it('lists its models with their module trees, sites and manifests, and serves the tokenizer', async () => {
    const health = await client.health();
    expect(health).toMatchObject({ status: 'ok', models: ['gpt2'] });
    const [info] = await client.models();
    expect(info.name).toBe('gpt2');
    expect(info.tree).toBe(String(model));
    expect(info.sites).toEqual(model.native.sites());
    expect(info.manifest).toEqual(model.manifest);
    expect(await client.tokenizer('gpt2')).toBe(readFileSync(join(MODELS.gpt2, 'tokenizer.json'), 'utf8'));
    expect((await client.model('gpt2')).architecture).toBe('GPT2LMHeadModel');
  });
});

describe('tutorials through the server equal local', () => {
  it('1: activations and logits (and eager PyTorch)', async () => {
    const fn = (m: any) => ({ acts: m.transformer.h.map((b: any) => b.output[0]), logits: m.output.logits });
    const remote = await remoteTrace<any>(client, model, 'The capital of France is', fn);
    const local = (await model.trace('The capital of France is', fn)) as any;
    expect(remote.acts.length).toBe(12);
    remote.acts.forEach((a: Tensor, i: number) => same(a, local.acts[i]));
    same(remote.logits, local.logits);
    const ids = model.tokenizer.encode('The capital of France is');
    const ref = oracle('gpt2', `result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(remote.logits, ref);
  });

  it('2: activation patching with a Tensor sent back to the server', async () => {
    const clean = await remoteTrace<Tensor>(client, model, 'The cat sat on the mat', (m: any) => m.transformer.h[8].output[0]);
    const patch = (c: Tensor) => (m: any) => {
      m.transformer.h[8].output[0].copy_(c);
      return m.output.logits;
    };
    const remote = await remoteTrace<Tensor>(client, model, 'The dog ran in the park', patch(clean));
    const localClean = (await model.trace('The cat sat on the mat', (m: any) => m.transformer.h[8].output[0])) as Tensor;
    same(clean, localClean);
    same(remote, (await model.trace('The dog ran in the park', patch(localClean))) as Tensor);
  });

  it('3: several invokes in one forward, and a session', async () => {
    const fn = (tracer: any) => {
      let cat: any;
      tracer.invoke('The cat sat on the mat', (m: any) => {
        cat = m.transformer.h[6].output[0];
      });
      return tracer.invoke('The dog ran through the park', (m: any) => {
        m.transformer.h[6].output[0].copy_(cat);
        return m.output.logits;
      });
    };
    same(await remoteTrace<Tensor>(client, model, fn), (await model.trace(fn)) as Tensor);
    const session = (s: any) => {
      const a = s.trace('Hello world', (m: any) => m.transformer.h[3].output[0].index(':, -1'));
      return s.trace('Goodbye world', (m: any) => {
        m.transformer.h[3].output[0].index(':, -1').copy_(a);
        return { logits: m.output.logits, a };
      });
    };
    const remote = await remoteSession(client, model, session);
    const local = (await model.session(session)) as any;
    same(remote.logits, local.logits);
    same(remote.a, local.a);
  });

  it('generates with interventions, streaming each token as it is made', async () => {
    const steer = Tensor.from(Array.from({ length: 64 }, (_, i) => Math.cos(i)));
    const fn = (m: any, gen: any) => {
      gen.all((mm: any) => mm.transformer.h[4].output[0].add_(steer));
      return { first: m.output.logits };
    };
    const tokens: number[][] = [];
    const remote = (await remoteGenerate(client, model, 'Once upon a', { maxNewTokens: 12, seed: 1 }, fn, { onToken: (e) => tokens.push(e.tokens) })) as any;
    const local = (await model.generate('Once upon a', { maxNewTokens: 12, seed: 1 }, fn)) as any;
    expect(remote.tokens[0]).toEqual(local.tokens);
    expect(remote.steps).toBe(local.steps);
    expect(tokens.length).toBe(remote.steps);
    expect(tokens.map((t) => t[0]).slice(0, local.tokens.length)).toEqual(local.tokens);
    same(remote.value.first, local.first);
    // stop strings are checked on the server, where the tokens are made
    const text = model.tokenizer.decode(local.tokens);
    const stop = text.slice(3, 5);
    const cut = (await remoteGenerate(client, model, 'Once upon a', { maxNewTokens: 12, seed: 1, stop: [stop] }, fn)) as any;
    expect(cut.steps).toBeLessThan(local.steps);
  });
});

describe('errors', () => {
  it('a failing node comes back with its id, which the client maps to the user line', async () => {
    const bad = (m: any) => {
      m.transformer.h[1].output[0].add_(Tensor.from([1, 2, 3]));
      return m.output.logits;
    };
    const rec = recordTrace(model, 'Hello', bad);
    const err = (await client.submit('gpt2', 'trace', await encodeRequest(rec.request)).catch((e) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.status).toBe(400);
    expect(err.code).toBe('run_error');
    expect(typeof err.node).toBe('number');
    expect(err.message).toMatch(new RegExp(`node ${err.node}`));
    const local = (await model.trace('Hello', bad).catch((e) => e)) as Error;
    expect(local.message).toMatch(/serve-api\.test\.ts:\d+:\d+/);
    expect(rec.explain(err.template!)).toBe(local.message);
    // sendRecorded gives the local error's message itself
    const again = (await sendRecorded(client, 'gpt2', recordTrace(model, 'Hello', bad)).catch((e) => e)) as RemoteError;
    expect(again.message).toBe(local.message);
    expect(again).toMatchObject({ status: 400, code: 'run_error' });
    // the server is fine after it
    expect((await remoteTrace<Tensor>(client, model, 'Hello', (m: any) => m.output.logits)).shape[2]).toBe(512);
  });

  it('refuses a bad graph before queueing it (400, naming the node), and other statuses', async () => {
    const rec = recordTrace(model, 'Hello', (m: any) => m.transformer.h[0].output[0]);
    const code = rec.request.graph.code;
    code[2 + 1] = 1e6; // the first node's site: no such site
    const err = (await client.submit('gpt2', 'trace', await encodeRequest(rec.request)).catch((e) => e)) as RemoteError;
    expect(err).toMatchObject({ status: 400, code: 'bad_graph', node: 0 });
    expect(err.message).toMatch(/site 1000000 does not exist/);
    const good = await encodeRequest(recordTrace(model, 'Hello', (m: any) => m.output.logits).request);
    // the kind in the URL and the envelope must agree
    expect(await client.submit('gpt2', 'session', good).catch((e) => e)).toMatchObject({ status: 400, code: 'bad_graph' });
    expect(await client.submit('nope', 'trace', good).catch((e) => e)).toMatchObject({ status: 404, code: 'no_model' });
    const noType = await raw('/v1/models/gpt2/trace', { method: 'POST', body: good, headers: { 'content-type': 'text/plain' } });
    expect(noType.status).toBe(415);
    expect((await noType.json()).error.code).toBe('unsupported_media_type');
    const unknown = await raw('/v1/nothing');
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'not_found' } });
    expect(await client.job('nosuchjob').status().catch((e) => e)).toMatchObject({ status: 404, code: 'no_job' });
  });

  it('prototype pollution: __proto__ and constructor keys are refused, op names on the prototype are unknown ops', async () => {
    const good = await encodeRequest(recordTrace(model, 'Hello', (m: any) => m.output.logits).request);
    const jsonBytes = Buffer.from(good.buffer, good.byteOffset).readUInt32LE(8);
    const envelope = JSON.parse(Buffer.from(good.subarray(16, 16 + jsonBytes)).toString('utf8'));
    // the same real request with a poisoned JSON part (top level and nested), length fixed up
    const poisoned = (mutate: (text: string) => string) => {
      const j = Buffer.from(mutate(JSON.stringify(envelope)), 'utf8');
      const out = Buffer.concat([Buffer.from(good.subarray(0, 16)), j, Buffer.from(good.subarray(16 + jsonBytes))]);
      out.writeUInt32LE(j.length, 8);
      return new Uint8Array(out);
    };
    const attacks = [
      poisoned((t) => t.replace('{', '{"__proto__":{"polluted":1},')),
      poisoned((t) => t.replace('{', '{"constructor":{"prototype":{"polluted":1}},')),
      poisoned((t) => t.replace('"graph":{', '"graph":{"__proto__":{"polluted":1},')),
      poisoned((t) => t.replace(/"traces":\[\{/, '"traces":[{"__proto__":{"polluted":1},')),
    ];
    for (const body of attacks) {
      const err = (await client.submit('gpt2', 'trace', body).catch((e) => e)) as RemoteError;
      expect(err).toMatchObject({ status: 400 });
      expect(err.message).toMatch(/additional properties/);
    }
    // a plain JSON body with a poisoned key: fastify's parser refuses it, nothing 5xx
    for (const text of ['{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}']) {
      const res = await raw('/v1/models/gpt2/trace', { method: 'POST', body: text, headers: { 'content-type': 'application/json' } });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    }
    // an op named after an Object.prototype member is an unknown op, not a function found on the prototype
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const rec = recordTrace(model, 'Hello', (m: any) => m.transformer.h[0].output[0].softmax(-1));
      const strings = rec.request.graph.strings;
      const at = strings.indexOf('softmax');
      expect(at).toBeGreaterThanOrEqual(0);
      strings[at] = name;
      const err = (await client.submit('gpt2', 'trace', await encodeRequest(rec.request)).catch((e) => e)) as RemoteError;
      expect(err).toMatchObject({ status: 400, code: 'bad_graph' });
      expect(err.message).toMatch(/unknown op/);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    // and the server still serves
    expect(await remoteTrace(client, model, 'Hello', (m: any) => m.output.logits)).toBeInstanceOf(Tensor);
  });

  it('without keys, a request forwarded by a proxy on this machine is refused though it comes from loopback', async () => {
    expect((await raw('/v1/models')).status).toBe(200);
    for (const h of [{ 'x-forwarded-for': '203.0.113.7' }, { forwarded: 'for=203.0.113.7' }, { 'x-real-ip': '203.0.113.7' }]) {
      const res = await raw('/v1/models', { headers: h });
      expect(res.status).toBe(403);
      expect((await res.json()).error.message).toMatch(/forwarded by a proxy: serve with --keys/);
    }
    // health stays open (a proxy's or systemd's liveness check)
    expect((await raw('/v1/health', { headers: { 'x-forwarded-for': '203.0.113.7' } })).status).toBe(200);
    // streamed answers tell nginx not to buffer them
    const job = await client.submit('gpt2', 'trace', await encodeRequest(recordTrace(model, 'Hi', (m: any) => m.output.logits).request), { blocking: false, quiet: true });
    const events = await raw(`/v1/jobs/${job.id}/events`);
    expect(events.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    expect(events.headers.get('x-accel-buffering')).toBe('no');
    await events.text();
  });

  it('413 for a body over the limit (by Content-Length, before reading it) and a result over the limit', async () => {
    const small = await serveGpt2({ limits: { maxRequestBytes: 4096, maxResultBytes: 2048 } });
    try {
      const c = clientOf(small);
      const big = Tensor.from(new Float32Array(4096));
      const rec = recordTrace(model, 'Hello', (m: any) => m.transformer.h[0].output[0].index('0, 0, 0').add(big));
      expect(await c.submit('gpt2', 'trace', await encodeRequest(rec.request, { compressAbove: Infinity })).catch((e) => e)).toMatchObject({ status: 413, code: 'too_large' });
      const logits = recordTrace(model, 'Hello there my friend', (m: any) => m.output.logits);
      expect(await c.submit('gpt2', 'trace', await encodeRequest(logits.request)).catch((e) => e)).toMatchObject({ status: 413, code: 'result_too_large' });
      expect((await remoteTrace<Tensor>(c, model, 'Hi', (m: any) => m.transformer.h[0].output[0].index('0, -1, 0:4'))).shape).toEqual([4]);
    } finally {
      await small.close();
    }
  });

  it('a node count over the limit is refused', async () => {
    const s = await serveGpt2({ limits: { maxNodes: 10 } });
    try {
      const rec = recordTrace(model, 'Hello', (m: any) => m.transformer.h.map((b: any) => b.output[0]));
      expect(await clientOf(s).submit('gpt2', 'trace', await encodeRequest(rec.request)).catch((e) => e)).toMatchObject({ status: 400, message: expect.stringMatching(/at most 10/) });
    } finally {
      await s.close();
    }
  });
});

const longGen = async (c: RemoteClient, n = 120, submit: any = {}) => {
  const rec = recordGenerate(model, 'Once', { maxNewTokens: n, stop: [] }, (m: any, gen: any) => {
    gen.all((mm: any) => mm.transformer.h[2].output[0].mul_(1));
  });
  return c.submit('gpt2', 'generate', await encodeRequest(rec.request), { quiet: true, ...submit });
};

describe('limits: 429 with Retry-After, 504, 503', () => {
  it('queue full and a key over its concurrency get 429 with Retry-After; the client retries them', async () => {
    const s = await serveGpt2({ limits: { maxQueue: 1, concurrency: 2 } });
    try {
      const c = new RemoteClient(s.url, { quiet: true, retries: 0 });
      const first = (await longGen(c, 120, { blocking: false })) as any;
      const second = (await longGen(c, 120, { blocking: false })) as any;
      expect((await second.status()).state).toBe('queued');
      expect((await second.status()).position).toBe(1);
      const r = await fetch(`${s.url}/v1/models/gpt2/generate`, { method: 'POST', headers: { 'content-type': 'application/x-torchsight' }, body: await encodeRequest(recordGenerate(model, 'x', { maxNewTokens: 2 }).request) });
      expect(r.status).toBe(429);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect((await r.json()).error.code).toMatch(/queue_full|too_many_requests/);
      // a client with retries waits its turn and gets through
      const patient = new RemoteClient(s.url, { quiet: true, retries: 60, backoffMs: 50 });
      const out = (await remoteTrace<Tensor>(patient, model, 'Hello', (m: any) => m.output.logits));
      expect(out.shape[2]).toBe(512);
      await first.result();
      await second.result();
    } finally {
      await s.close();
    }
  });

  it('a client retries a refused connection until the server is up', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const c = new RemoteClient(`http://127.0.0.1:${port}`, { quiet: true, retries: 20, backoffMs: 50 });
    const pending = remoteTrace<Tensor>(c, model, 'Hi', (m: any) => m.output.logits);
    const s = await serveGpt2({ port });
    try {
      expect((await pending).shape[2]).toBe(512);
    } finally {
      await s.close();
    }
    const gone = new RemoteClient(`http://127.0.0.1:${port}`, { quiet: true, retries: 1, backoffMs: 10 });
    expect(await gone.health().catch((e) => e)).toMatchObject({ status: 0, code: 'unreachable' });
  });

  it("refused requests give their key's slot back", async () => {
    const s = await serveGpt2({ limits: { concurrency: 1 } });
    try {
      const c = new RemoteClient(s.url, { quiet: true, retries: 0 });
      for (let i = 0; i < 3; i++) expect(await c.submit('gpt2', 'trace', new Uint8Array(30)).catch((e) => e)).toMatchObject({ status: 400 });
      expect((await remoteTrace<Tensor>(c, model, 'Hi', (m: any) => m.output.logits)).shape[2]).toBe(512);
      expect((await remoteTrace<Tensor>(c, model, 'Hi', (m: any) => m.output.logits)).shape[2]).toBe(512);
    } finally {
      await s.close();
    }
  });

  it('a quota of requests a minute answers 429 with the seconds to wait', async () => {
    const s = await serveGpt2({ limits: { ratePerMinute: 2 } });
    try {
      const c = new RemoteClient(s.url, { quiet: true, retries: 0 });
      await remoteTrace(c, model, 'a', (m: any) => m.output.logits);
      await remoteTrace(c, model, 'b', (m: any) => m.output.logits);
      const err = (await remoteTrace(c, model, 'c', (m: any) => m.output.logits).catch((e) => e)) as RemoteError;
      expect(err).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(err.retryAfter).toBeGreaterThanOrEqual(1);
      expect(err.retryAfter).toBeLessThanOrEqual(30);
    } finally {
      await s.close();
    }
  });

  it('a request past its time is cancelled with 504, and the model serves the next', async () => {
    const s = await serveGpt2({ limits: { timeoutMs: 30 } });
    try {
      const c = clientOf(s);
      expect(await longGen(c, 120).catch((e) => e)).toMatchObject({ status: 504, code: 'timeout', message: expect.stringMatching(/30 ms/) });
      expect((await remoteTrace<Tensor>(c, model, 'Hi', (m: any) => m.output.logits)).shape[2]).toBe(512);
    } finally {
      await s.close();
    }
  });

  it('closing finishes the running request, cancels queued ones and refuses new ones with 503', async () => {
    const s = await serveGpt2();
    const c = clientOf(s);
    const states: string[] = [];
    const running = longGen(c, 60, { onStatus: (e: JobStatusEvent) => states.push(e.state) });
    while (!states.includes('running')) await new Promise((r) => setTimeout(r, 5));
    // sent once the first runs, so it is the one that waits (two sent together may arrive in either order)
    const queued = longGen(c, 60).catch((e) => e);
    while (s.scheduler.queued < 1) await new Promise((r) => setTimeout(r, 5));
    const closed = s.close();
    const refused = await fetch(`${s.url}/v1/models/gpt2/trace`, { method: 'POST', headers: { 'content-type': 'application/x-torchsight' }, body: new Uint8Array(20) }).catch((e) => e);
    if (refused instanceof Response) expect(refused.status).toBe(503);
    const done = (await running) as any;
    expect(done.generate.steps).toBe(60);
    expect(await queued).toMatchObject({ status: 503, code: 'shutting_down' });
    await closed;
  });
});

describe('jobs', () => {
  it('goes received/queued (with its position), running, done; non-blocking jobs reattach from another client', async () => {
    const a = (await longGen(client, 40, { blocking: false })) as any;
    const states: JobStatusEvent[] = [];
    const b = longGen(client, 5, { onStatus: (e: JobStatusEvent) => states.push(e) });
    await b;
    expect(states.map((s) => s.state)).toEqual(expect.arrayContaining(['queued', 'running', 'done']));
    expect(states.find((s) => s.state === 'queued')?.position).toBeGreaterThanOrEqual(1);
    expect(states[states.length - 1].state).toBe('done');
    const other = clientOf(server).job(a.id);
    const st = await other.status();
    expect(st).toMatchObject({ id: a.id, model: 'gpt2', kind: 'generate' });
    const res = await other.result();
    expect(res.generate!.steps).toBe(40);
    expect((await other.status()).state).toBe('done');
    // its events can be read again: the status and every token
    const tokens: number[] = [];
    expect(await other.events({ onToken: (e) => tokens.push(e.step) })).toMatchObject({ state: 'done' });
    expect(tokens).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });

  it('keeps results for the TTL only', async () => {
    const s = await serveGpt2({ limits: { resultTtlMs: 200 } });
    try {
      const c = clientOf(s);
      const job = (await longGen(c, 2, { blocking: false })) as any;
      await job.result();
      await new Promise((r) => setTimeout(r, 700));
      expect(await job.status().catch((e: unknown) => e)).toMatchObject({ status: 404 });
    } finally {
      await s.close();
    }
  });

  it('a client abort cancels its request on the server and frees the model', async () => {
    const ac = new AbortController();
    let id = '';
    const p = longGen(client, 120, {
      signal: ac.signal,
      onStatus: (e: JobStatusEvent) => (id = e.id),
      onToken: (e: { step: number }) => e.step === 2 && ac.abort(new Error('enough')),
    });
    await expect(p).rejects.toThrow('enough');
    const t0 = Date.now();
    let st;
    while ((st = await client.job(id).status()).state === 'running' && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
    expect(st.state).toBe('cancelled');
    expect(st.steps).toBeLessThan(120);
    expect((await remoteTrace<Tensor>(client, model, 'Hi', (m: any) => m.output.logits)).shape[2]).toBe(512);
    // the same without following the job's events (one blocking POST): the disconnect cancels it
    const ac2 = new AbortController();
    const plain = longGen(client, 120, { signal: ac2.signal });
    while ((await client.health()).running === 0) await new Promise((r) => setTimeout(r, 2));
    ac2.abort(new Error('stop'));
    await expect(plain).rejects.toThrow('stop');
    const t1 = Date.now();
    while ((await client.health()).running > 0 && Date.now() - t1 < 10_000) await new Promise((r) => setTimeout(r, 10));
    expect((await client.health()).running).toBe(0);
    expect(Date.now() - t1).toBeLessThan(10_000);
  });
});

describe('concurrency', () => {
  it('16 concurrent clients each get exactly their own result; requests together run batched', async () => {
    const before = await (await raw('/metrics')).text();
    const count = (text: string, le: string) => Number(new RegExp(`torchsight_batch_size_bucket\\{le="${le}",model="gpt2"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    const prompts = Array.from({ length: 16 }, (_, i) => (i % 4 === 3 ? `A longer prompt number ${i} here` : `Prompt number ${i}`));
    const fn = (k: number) => (m: any) => {
      m.transformer.h[3].output[0].index(':, -1').add_(k);
      return { h: m.transformer.h[5].output[0], top: m.output.logits.index('0, -1').argmax() };
    };
    const clients = prompts.map(() => clientOf(server));
    const remote = await Promise.all(prompts.map((p, i) => remoteTrace<any>(clients[i], model, p, fn(i))));
    for (let i = 0; i < 16; i++) {
      const local = (await model.trace(prompts[i], fn(i))) as any;
      expect(remote[i].h.shape).toEqual(local.h.shape);
      const a = remote[i].h.data() as Float32Array;
      const b = local.h.data() as Float32Array;
      for (let k = 0; k < a.length; k++) expect(Math.abs(a[k] - b[k])).toBeLessThanOrEqual(1e-4 + 1e-4 * Math.abs(b[k]));
      expect(remote[i].top.item()).toBe(local.top.item());
    }
    const after = await (await raw('/metrics')).text();
    const runs = count(after, '\\+Inf') - count(before, '\\+Inf');
    const alone = count(after, '1') - count(before, '1');
    expect(runs).toBeLessThan(16); // some requests shared a forward
    expect(alone).toBeLessThan(runs);
    expect(after).toMatch(/torchsight_requests_total\{model="gpt2",kind="trace",status="200"\} \d+/);
    expect(after).toMatch(/torchsight_forward_seconds_count\{model="gpt2"\} \d+/);
    // refusals are counted too, an unknown model's name folded into one label
    expect(after).toMatch(/torchsight_requests_total\{model="unknown",kind="trace",status="404"\} [1-9]/);
    expect(after).toMatch(/torchsight_requests_total\{model="gpt2",kind="trace",status="400"\} [1-9]/);
    expect(after).toMatch(/torchsight_queue_depth\{model="gpt2"\} 0/);
  });
});

describe('concurrent generations', () => {
  it('run batched step by step, each streaming and returning exactly its own tokens', async () => {
    const count = (text: string, le: string) => Number(new RegExp(`torchsight_batch_size_bucket\\{le="${le}",model="gpt2"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    const before = await (await raw('/metrics')).text();
    const prompts = Array.from({ length: 6 }, (_, k) => Array.from({ length: 5 }, (_, i) => (13 * k + 7 * i + 3) % 500));
    const streamed: number[][] = prompts.map(() => []);
    const remote = (await Promise.all(
      prompts.map((p, k) => remoteGenerate(clientOf(server), model, p, { maxNewTokens: 8 }, undefined, { onToken: (e) => streamed[k].push(e.tokens[0]) })),
    )) as any[];
    for (let k = 0; k < 6; k++) {
      const local = (await model.generate(prompts[k], { maxNewTokens: 8 })) as any;
      expect(remote[k].tokens[0]).toEqual(local.tokens);
      expect(remote[k].steps).toBe(local.steps);
      expect(streamed[k]).toEqual(local.tokens);
    }
    const after = await (await raw('/metrics')).text();
    expect(count(after, '1') - count(before, '1')).toBeLessThan(count(after, '\\+Inf') - count(before, '\\+Inf'));
  });
});

describe('fuzz', () => {
  it('hundreds of malformed and mutated requests: never a 5xx, never a dead server', async () => {
    const bases = [
      await encodeRequest(recordTrace(model, ['Hello there', 'Hi'], (m: any) => ({ h: m.transformer.h[1].output[0].index(':, -1').mul(2), l: m.output.logits.softmax(-1) })).request),
      await encodeRequest(recordGenerate(model, 'Once', { maxNewTokens: 3 }).request),
    ];
    let seed = 99;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const statuses = new Map<number, number>();
    const iters = Number(process.env.FUZZ_ITERS ?? 300);
    for (let n = 0; n < iters; n++) {
      const base = bases[n % 2];
      const b = Buffer.from(base);
      const mode = n % 4;
      if (mode === 0) for (let k = 0; k < 3; k++) b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
      else if (mode === 1) {
        const jsonLen = b.readUInt32LE(8);
        const at = 16 + jsonLen + 8 * Math.floor((random() * (b.length - 16 - jsonLen)) / 8);
        if (at + 8 <= b.length) b.writeDoubleLE([NaN, -1, 1e9, 3, 0, -3, 2.5, 64][Math.floor(random() * 8)], at);
      } else if (mode === 2) {
        const jsonLen = b.readUInt32LE(8);
        b[16 + Math.floor(random() * jsonLen)] = '0123456789-'.charCodeAt(Math.floor(random() * 11));
      }
      const body = mode === 3 ? b.subarray(0, Math.floor(random() * b.length)) : b;
      const r = await raw(`/v1/models/gpt2/${n % 2 ? 'generate' : 'trace'}`, { method: 'POST', headers: { 'content-type': 'application/x-torchsight' }, body });
      const text = await r.text();
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status >= 500) throw new Error(`mutation ${n} got ${r.status}: ${text}\n${serverLogs.slice(-5).join('')}`);
      if (r.status !== 200) expect(JSON.parse(text).error.code).toBeTypeOf('string');
    }
    expect(statuses.get(400)).toBeGreaterThan(iters / 4);
    expect((await client.health()).status).toBe('ok');
    expect((await remoteTrace<Tensor>(client, model, 'Hi', (m: any) => m.output.logits)).shape[2]).toBe(512);
  });
});
