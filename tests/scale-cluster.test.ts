// Serving beyond one machine: a real redis-server, two fronts (`torchsight serve --redis`) and two
// workers (`torchsight worker`), each a separate process on loopback. Every answer equals the same
// code run on a local copy of the same model folder (generated tokens exactly; activations within
// the float summation order of a batched forward, as in serve-api.test.ts; the local path is itself
// checked against eager PyTorch in tutorials.test.ts and serve-api.test.ts). Also: the catalog and
// worker counts, keys and quotas shared by the fronts, a worker SIGKILLed mid-load (no request lost
// or answered twice), a restarted worker taking the jobs that waited, a front dying (its jobs kept
// for another front), Redis stopped and started again, and a request whose model lost its last
// worker for longer than the grace period (503 no_worker).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { LanguageModel, Tensor } from '../src/index.js';
import { RemoteError } from '../src/remote/client.js';
import { addKey } from '../src/serve/keys.js';
import { MODELS, ROOT } from './helpers.js';
import { kill, RedisProcess, freePort, spawnFront, spawnWorker, stop, testRedis, until, type Proc } from './scale-helpers.js';

const TINY_FACTS = join(ROOT, 'models', 'tiny-facts');
const READ = (m: any) => m.transformer.h[1].output[0];

let local: LanguageModel;
let redis: Awaited<ReturnType<typeof testRedis>>;
let dir: string;
let alice: string;
let bob: string;
let fronts: Proc[] = [];
let workers: (Proc | undefined)[] = [];

const oracle = new Map<string, number[]>();
/** The local model's value of READ on `prompt` (computed once). */
async function expected(prompt: string): Promise<number[]> {
  let v = oracle.get(prompt);
  if (!v) oracle.set(prompt, (v = Array.from(((await local.trace(prompt, READ)) as Tensor).data() as Float32Array)));
  return v;
}

const remoteOf = (front: Proc, apiKey = alice, options: { retries?: number } = {}) => LanguageModel.remote(front.url, 'gpt2', { apiKey, quiet: true, backoffMs: 50, ...options });

/** Equal to the local value: exactly when run alone; within float summation order when batched with others (as serve-api.test.ts). */
function same(got: Tensor, want: number[]): void {
  const a = got.data() as Float32Array;
  expect(a.length).toBe(want.length);
  for (let k = 0; k < a.length; k++) if (Math.abs(a[k] - want[k]) > 1e-4 + 1e-4 * Math.abs(want[k])) expect(a[k]).toBe(want[k]);
}

async function checkTrace(remote: LanguageModel, prompt: string): Promise<void> {
  same((await remote.trace(prompt, READ)) as Tensor, await expected(prompt));
}

/** Sum of torchsight_requests_total{model="gpt2", status="200"} on a front. */
async function answered(front: Proc): Promise<number> {
  const text = await (await fetch(`${front.url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^torchsight_requests_total\{([^}]*)\} (\d+)$/gm)) if (m[1].includes('model="gpt2"') && m[1].includes('status="200"')) n += Number(m[2]);
  return n;
}

/** Forwards run and jobs run in them, over the live workers (their metrics, torchsight_batch_size). */
async function batches(): Promise<{ runs: number; jobs: number }> {
  let runs = 0;
  let jobs = 0;
  for (const w of workers) {
    if (!w) continue;
    const text = await (await fetch(w.url)).text();
    runs += Number(/^torchsight_batch_size_count\{model="gpt2"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    jobs += Number(/^torchsight_batch_size_sum\{model="gpt2"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  }
  return { runs, jobs };
}

async function models(front: Proc): Promise<Record<string, number>> {
  const r = await fetch(`${front.url}/v1/models`, { headers: { authorization: `Bearer ${alice}` } });
  const body = (await r.json()) as { models: { name: string; workers: number }[] };
  return Object.fromEntries(body.models.map((m) => [m.name, m.workers]));
}

beforeAll(async () => {
  redis = await testRedis();
  dir = mkdtempSync(join(tmpdir(), 'torchsight-scale-'));
  const keys = join(dir, 'keys.json');
  alice = addKey(keys, 'alice');
  bob = addKey(keys, 'bob', { ratePerMinute: 3 });
  workers = await Promise.all([spawnWorker(redis.url, redis.prefix, [`${MODELS.gpt2}=gpt2`, `${TINY_FACTS}=tiny-facts`]), spawnWorker(redis.url, redis.prefix)]);
  fronts = await Promise.all([spawnFront(redis.url, redis.prefix, ['--keys', keys]), spawnFront(redis.url, redis.prefix, ['--keys', keys])]);
  local = await LanguageModel.load(MODELS.gpt2);
}, 120_000);

afterAll(async () => {
  await Promise.all([...fronts, ...workers].map((p) => stop(p)));
  await redis?.stop();
  await local?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('fronts and workers over Redis', () => {
  it('lists the models that have a live worker, with worker counts; tree and tokenizer come from the workers', async () => {
    await until('both workers in the catalog', async () => {
      const m = await models(fronts[1]);
      return m.gpt2 === 2 && m['tiny-facts'] === 1;
    });
    const remote = await remoteOf(fronts[0]);
    expect(String(remote)).toBe(String(local));
    const tok = await fetch(`${fronts[1].url}/v1/models/tiny-facts/tokenizer.json`, { headers: { authorization: `Bearer ${alice}` } });
    expect(await tok.text()).toBe(readFileSync(join(TINY_FACTS, 'tokenizer.json'), 'utf8'));
    // validated at the front against what the workers published: 404 and 400 never reach a queue
    const none = await fetch(`${fronts[0].url}/v1/models/nope/trace`, { method: 'POST', headers: { authorization: `Bearer ${alice}` } });
    expect(none.status).toBe(404);
    const junk = await fetch(`${fronts[0].url}/v1/models/gpt2/trace`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/x-torchsight' },
      body: new Uint8Array([1, 2, 3, 4]),
    });
    expect(junk.status).toBe(400);
  });

  it('concurrent clients through both fronts get exact answers; a generation streams its tokens', async () => {
    const [ra, rb] = await Promise.all([remoteOf(fronts[0]), remoteOf(fronts[1])]);
    const before = await batches();
    const prompts = Array.from({ length: 24 }, (_, i) => `Client ${i} asks` + ' again'.repeat(i % 3));
    await Promise.all(prompts.map((p, i) => checkTrace(i % 2 ? ra : rb, p)));
    // the workers took several waiting jobs at once and ran them as one forward
    const after = await batches();
    expect(after.jobs - before.jobs).toBe(24);
    expect(after.runs - before.runs).toBeLessThan(24);

    const steps: number[] = [];
    const gen = await rb.generate('Once upon a time', { maxNewTokens: 12, onToken: (e: { step: number }) => steps.push(e.step) } as any);
    const want = await local.generate('Once upon a time', { maxNewTokens: 12 });
    expect(gen.tokens).toEqual(want.tokens);
    expect(steps).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });

  it("a small trace's result comes on its front's reply channel; a large body and a large result take the paths apart, and answer exactly", async () => {
    const remote = await remoteOf(fronts[0]);
    // every reply the workers publish, seen from beside: which channel, which job
    const spy = new Redis(redis.url);
    const replies: string[] = [];
    spy.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer) => replies.push(channel.toString()));
    await spy.psubscribe(`${redis.prefix}:reply:*`);
    await checkTrace(remote, 'A small question');
    await until('the reply seen', async () => replies.length === 1);
    // the front that holds the client listens on exactly that channel
    const [, listeners] = (await spy.duplicate().pubsub('NUMSUB', replies[0])) as [string, number];
    expect(Number(listeners)).toBe(1);

    // about 100 tokens, within the model's 128 positions
    let prompt = 'A long question';
    while (local.tokenizer.encode(prompt).length < 100) prompt += ' about everything';
    const n = local.tokenizer.encode(prompt).length;
    // a [1, n, d] patch: its values make the body far larger than the 4 KiB that travel inline
    const d = ((await local.trace(prompt, READ)) as Tensor).shape.at(-1)!;
    const patch = Tensor.from(Float32Array.from({ length: n * d }, (_, i) => Math.sin(i) * 0.1), { shape: [1, n, d] });
    // every block's output and the logits: far more than the 256 KiB of the reply channel
    const fn = (m: any) => {
      m.transformer.h[0].output[0].add_(patch);
      return [...m.transformer.h.map((b: any) => b.output[0]), m.lm_head.output];
    };
    const got = (await remote.trace(prompt, fn)) as Tensor[];
    const want = (await local.trace(prompt, fn)) as Tensor[];
    expect(want.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0)).toBeGreaterThan(256 * 1024);
    expect(got.map((t) => t.shape)).toEqual(want.map((t) => t.shape));
    got.forEach((t, i) => same(t, Array.from(want[i].data() as Float32Array)));
    // too large for the reply channel: it came by the completion and a read
    expect(replies).toHaveLength(1);
    patch.dispose();
    spy.disconnect();
  });

  it('keys and rate quotas hold across fronts', async () => {
    const [b0, b1] = await Promise.all([remoteOf(fronts[0], bob, { retries: 0 }), remoteOf(fronts[1], bob, { retries: 0 })]);
    // bob's quota is 3 a minute, over both fronts (loading the remote model is no request)
    await checkTrace(b0, 'Quota one');
    await checkTrace(b1, 'Quota two');
    await checkTrace(b0, 'Quota three');
    const over = await b1.trace('Quota four', READ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(over).toBeInstanceOf(RemoteError);
    expect((over as RemoteError).status).toBe(429);
    expect((over as RemoteError).code).toBe('rate_limited');
    const wrong = await fetch(`${fronts[1].url}/v1/models`, { headers: { authorization: 'Bearer tsk_not_a_key' } });
    expect(wrong.status).toBe(401);
  });

  it('a worker SIGKILLed mid-load: every request is answered once, exactly', async () => {
    const [ra, rb] = await Promise.all([remoteOf(fronts[0]), remoteOf(fronts[1])]);
    const before = (await answered(fronts[0])) + (await answered(fronts[1]));
    const prompts = Array.from({ length: 24 }, (_, i) => `Under load ${i}` + ' and more'.repeat(i % 4));
    let done = 0;
    const traces = prompts.map((p, i) => checkTrace(i % 2 ? ra : rb, p).then(() => done++));
    // generations take long enough to be running on the worker when it dies
    const gens = [0, 1, 2, 3].map((i) => (i % 2 ? ra : rb).generate(`Story ${i}`, { maxNewTokens: 40 }));
    await until('a few answers', () => done >= 2, 60_000, 10);
    await kill(workers[0]!);
    workers[0] = undefined;
    await Promise.all(traces);
    const got = await Promise.all(gens);
    for (let i = 0; i < 4; i++) expect(got[i].tokens).toEqual((await local.generate(`Story ${i}`, { maxNewTokens: 40 })).tokens);
    // 28 requests, 28 answers of 200: none lost, none answered twice
    expect((await answered(fronts[0])) + (await answered(fronts[1])) - before).toBe(28);
    // and the dead worker had jobs in hand: BullMQ found them stalled and gave them to the other
    const r = new Redis(redis.url);
    try {
      const ids = (await r.keys(`${redis.prefix}:q:gpt2:*`)).filter((k) => /:gpt2:[A-Za-z0-9_-]{16}$/.test(k));
      const stalled = (await Promise.all(ids.map((k) => r.hget(k, 'stc')))).filter((v) => Number(v) >= 1);
      expect(stalled.length).toBeGreaterThan(0);
    } finally {
      r.disconnect();
    }
    await until('the dead worker out of the catalog', async () => (await models(fronts[0])).gpt2 === 1);
  });

  it('a restarted worker takes the jobs that waited while no worker was live', async () => {
    await kill(workers[1]!);
    workers[1] = undefined;
    await until('no live gpt2 worker', async () => (await models(fronts[0])).gpt2 === undefined);
    const ra = await remoteOf(fronts[0]);
    const prompts = ['Waiting one', 'Waiting two is longer', 'Waiting three'];
    // the model's last worker left moments ago: requests are taken and wait for a worker
    const jobs = await Promise.all(prompts.map((p) => ra.trace(p, READ, { blocking: false })));
    await new Promise((r) => setTimeout(r, 1000));
    for (const j of jobs) expect((await j.status()).state).toBe('queued');
    workers[1] = await spawnWorker(redis.url, redis.prefix);
    const values = await Promise.all(jobs.map((j) => j.result()));
    for (let i = 0; i < prompts.length; i++) same(values[i] as Tensor, await expected(prompts[i]));
  });

  it("a front that dies loses only its own connections; another front answers for its jobs", async () => {
    const [ra, rb] = await Promise.all([remoteOf(fronts[0]), remoteOf(fronts[1])]);
    const job = await ra.generate('A front dies', { maxNewTokens: 30, blocking: false });
    const prompts = Array.from({ length: 8 }, (_, i) => `Front B keeps going ${i}`);
    const traces = Promise.all(prompts.map((p) => checkTrace(rb, p)));
    await kill(fronts[0]);
    await traces;
    // the job the dead front took: reattached through the other front (same key), from Redis
    const again = rb.job(job.id);
    const res = await again.result();
    // a reattached job gives its tokens a row each
    expect(res.tokens).toEqual([(await local.generate('A front dies', { maxNewTokens: 30 })).tokens]);
    // a front started again serves at once from the catalog in Redis
    fronts[0] = await spawnFront(redis.url, redis.prefix, ['--keys', join(dir, 'keys.json')]);
    await checkTrace(await remoteOf(fronts[0]), 'The front is back');
  });
});

describe('Redis stopped and started again', () => {
  let own: RedisProcess;
  let front: Proc | undefined;
  let impatient: Proc | undefined;
  let worker: Proc | undefined;
  beforeAll(async () => {
    own = new RedisProcess(await freePort());
    await own.start();
    // impatient: a front that holds requests for a model without workers for one second only
    [worker, front, impatient] = await Promise.all([spawnWorker(own.url, 'torchsight'), spawnFront(own.url, 'torchsight'), spawnFront(own.url, 'torchsight', ['--worker-grace', '1'])]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([stop(front), stop(impatient), stop(worker)]);
    await own?.stop();
  });

  it('answers 503 with a clear error while Redis is away, and serves again when it returns, answering the request in flight', async () => {
    await until('the worker in the catalog', async () => {
      const res = await fetch(`${front!.url}/v1/models`);
      return ((await res.json()) as { models: { name: string }[] }).models.some((m) => m.name === 'gpt2');
    });
    const remote = await LanguageModel.remote(front!.url, 'gpt2', { quiet: true, retries: 0 });
    await checkTrace(remote, 'Before the outage');
    // a generation in flight when Redis goes: Redis comes back empty, the front queues it again
    let stopped: Promise<void> | undefined;
    const inFlight = remote.generate('Through the outage', { maxNewTokens: 60, onToken: () => (stopped ??= own.stop()) } as any);
    await until('the generation to start', () => stopped !== undefined, 30_000, 5);
    await stopped;
    const r = await until('the front to notice', async () => {
      const res = await fetch(`${front!.url}/v1/models`);
      return res.status === 503 ? res : undefined;
    }, 10_000);
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('unavailable');
    expect(body.error.message).toMatch(/Redis at redis:\/\/127\.0\.0\.1:\d+.* unreachable/);
    expect(r.headers.get('retry-after')).toBeTruthy();
    const refused = await remote.trace('During the outage', READ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((refused as RemoteError).status).toBe(503);

    // Redis comes back empty (no persistence): the worker publishes its model again
    await own.start();
    await until('the worker back in the catalog', async () => {
      const res = await fetch(`${front!.url}/v1/models`);
      return res.status === 200 && ((await res.json()) as { models: { name: string }[] }).models.some((m) => m.name === 'gpt2');
    }, 30_000);
    await checkTrace(remote, 'After the outage');
    expect((await inFlight).tokens).toEqual((await local.generate('Through the outage', { maxNewTokens: 60 })).tokens);
  });

  it('a request waiting for a model whose last worker is gone past the grace period fails with 503 no_worker', async () => {
    // this front, too, has seen Redis again since the last test's outage (it polls on its own)
    let said = '';
    await until('the impatient front back on Redis', async () => {
      const res = await fetch(`${impatient!.url}/v1/models`);
      said = `${res.status} ${await res.text()}`;
      return res.status === 200;
    }, 30_000).catch((e: Error) => {
      throw new Error(`${e.message}; it last said ${said}; its log:\n${impatient!.stderr().slice(-4000)}`);
    });
    const remote = await LanguageModel.remote(impatient!.url, 'gpt2', { quiet: true, retries: 0 });
    await kill(worker!);
    worker = undefined;
    // the worker's heartbeat has not run out yet: the request is taken and waits in the queue
    const job = await remote.trace('Nobody will run this', READ, { blocking: false });
    const failed = await job.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failed).toBeInstanceOf(RemoteError);
    expect((failed as RemoteError).status).toBe(503);
    expect((failed as RemoteError).code).toBe('no_worker');
    // and a new request for it is refused at once
    const res = await fetch(`${impatient!.url}/v1/models/gpt2/trace`, { method: 'POST' });
    expect(res.status).toBe(404);
  });
});
