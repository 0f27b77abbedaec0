// The scale-out connections when Redis fails in the ways a network makes it fail: a Redis that
// stops answering without closing the connection (SIGSTOP stands for a partition or a half-open
// TCP connection), a close while Redis is away, a worker's heartbeats through an outage, and
// events of a job queued the moment its model is first followed. Each test has a redis-server of
// its own on a free loopback port, since it stops or pauses it.
import { afterEach, describe, expect, it } from 'vitest';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { Catalog, Publisher } from '../src/scale/liveness.js';
import { connect, redisKeys, type JobData, type JobOutcome } from '../src/scale/queues.js';
import { RedisGate } from '../src/scale/store.js';
import { EventFollower, type FollowHandlers } from '../src/scale/stream.js';
import { startWorker } from '../src/scale/worker.js';
import { DEFAULT_LIMITS } from '../src/serve/limits.js';
import type { ServedModel } from '../src/serve/runner.js';
import { Unavailable } from '../src/serve/scheduler.js';
import { freePort, RedisProcess, sleep, until } from './scale-helpers.js';

const keys = redisKeys('outage');
const noEvents: FollowHandlers = { running() {}, token() {}, finished() {}, lost() {} };

/** What a worker publishes of a model, without a model behind it (none of these tests runs one). */
function publishedOnly(name: string, tokenizerBytes = 100_000): ServedModel {
  return {
    name,
    manifest: { architecture: 'none' },
    tokenizerJson: Buffer.alloc(tokenizerBytes, 120),
    tree: name,
    device: 'cpu',
    dtype: 'float32',
    target: { sites: ['a'], ops: [], applicable: new Set<string>(), vocabSize: 10, maxPositions: 10 },
    run: () => Promise.reject(new Error('no model')),
    generate: () => Promise.reject(new Error('no model')),
    dispose: async () => undefined,
  } as unknown as ServedModel;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function redisServer(): Promise<RedisProcess> {
  const r = new RedisProcess(await freePort());
  await r.start();
  cleanups.push(() => {
    r.child?.kill('SIGCONT');
    return r.stop();
  });
  return r;
}

function conn(url: string, options: Parameters<typeof connect>[1] = {}): Redis {
  const c = connect(url, options);
  cleanups.push(() => c.disconnect());
  return c;
}

const ready = (c: Redis) => until(`connection ${c.options.connectionName ?? ''} ready`, () => c.status === 'ready', 10_000, 20);

/**
 * Stops Redis, closes what `close` closes (it must finish within `ms`), starts Redis again and
 * waits: the client lines of whatever connected back, but for the test's own 'admin'.
 */
async function closedThroughOutage(r: RedisProcess, close: () => Promise<unknown>, ms: number): Promise<string[]> {
  await r.stop();
  await sleep(1000);
  expect(await settledWithin(close(), ms)).not.toBe('pending');
  await r.start();
  await sleep(3000);
  const admin = conn(r.url, { name: 'admin' });
  await ready(admin);
  return ((await admin.client('LIST')) as string).split('\n').filter((l) => l && !/name=admin /.test(l));
}

/** `p`'s outcome, or 'pending' when it has not settled within `ms`. */
function settledWithin<T>(p: Promise<T>, ms: number): Promise<{ value: T } | { error: unknown } | 'pending'> {
  return Promise.race([p.then((value) => ({ value }), (error: unknown) => ({ error })), sleep(ms).then(() => 'pending' as const)]);
}

describe('scale-out connections through Redis failures', () => {
  it('a Redis that stops answering without closing the connection: admission fails with Unavailable, it does not hang', async () => {
    const r = await redisServer();
    const c = conn(r.url, { failFast: true, name: 'front' });
    await ready(c);
    const gate = new RedisGate(c, keys);
    cleanups.push(() => gate.close());
    expect((await gate.admit(null, DEFAULT_LIMITS)).ok).toBe(true);

    r.child!.kill('SIGSTOP');
    try {
      // TCP alone would wait many minutes; the bound here is generous beside the command timeout
      const out = await settledWithin(gate.admit(null, DEFAULT_LIMITS), 20_000);
      expect(out).not.toBe('pending');
      expect(out).toHaveProperty('error');
      expect((out as { error: unknown }).error).toBeInstanceOf(Unavailable);
    } finally {
      r.child!.kill('SIGCONT');
    }
    // and it admits again once Redis answers
    await until('an admission after SIGCONT', async () => (await gate.admit(null, DEFAULT_LIMITS)).ok, 15_000);
  }, 60_000);

  it("closing a front's event follower while Redis is away finishes, and nothing reconnects after", async () => {
    const r = await redisServer();
    const front = conn(r.url, { failFast: true, name: 'front' });
    await ready(front);
    const f = new EventFollower(r.url, keys, noEvents, front);
    await f.follow('m');
    const clients = await closedThroughOutage(r, () => f.close(), 20_000);
    expect(clients.join('\n')).not.toMatch(/name=torchsight-front-events/);
  }, 60_000);

  it("closing a worker while Redis is away finishes, and nothing reconnects after", async () => {
    const r = await redisServer();
    const logger = pino({ level: 'silent' });
    const w = await startWorker({ models: [publishedOnly('m', 10)], redis: r.url, prefix: keys.prefix, heartbeatMs: 200, logger });
    expect(await closedThroughOutage(r, () => w.close(), 30_000)).toEqual([]);
  }, 60_000);

  it("a worker's heartbeats do not pile up through an outage: the model is published again once, not once per missed beat", async () => {
    const r = await redisServer();
    const w = conn(r.url, { name: 'worker' });
    const errors: Error[] = [];
    const pub = new Publisher(w, keys, 'w1', [publishedOnly('m')], 100, (e) => errors.push(e));
    cleanups.push(() => pub.stop().catch(() => undefined));
    await pub.beat();

    // some 30 periods away; Redis comes back empty (no persistence)
    await r.stop();
    await sleep(3000);
    await r.start();

    const admin = conn(r.url, { name: 'admin' });
    await ready(admin);
    const catalog = new Catalog(admin, keys);
    await until(
      'the model published again',
      async () => {
        await catalog.refresh();
        return catalog.entries.get('m')?.workers === 1;
      },
      15_000,
    );
    // a few more periods: a queued beat would have landed by now
    await sleep(1000);
    const stats = (await admin.info('commandstats')) as string;
    const hset = Number(/cmdstat_hset:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    expect(hset).toBeGreaterThanOrEqual(1);
    expect(hset).toBeLessThanOrEqual(2);
    expect(catalog.entries.get('m')?.tokenizerJson.length).toBe(100_000);
  }, 60_000);

  it("a job queued as soon as a second, concurrent follow() resolves has its events delivered", async () => {
    const r = await redisServer();
    const front = conn(r.url, { failFast: true, name: 'front' });
    const worker = conn(r.url, { name: 'worker' });
    await ready(front);
    const finished = new Map<string, JobOutcome>();
    const f = new EventFollower(r.url, keys, { ...noEvents, finished: (id, o) => finished.set(id, o) }, front);
    cleanups.push(() => f.close());
    // model `name`'s queue on the front's connection, and a BullMQ worker answering `bytes`
    const served = async (name: string, bytes: number) => {
      const q = new Queue<JobData, JobOutcome>(name, { connection: front, prefix: keys.bull });
      cleanups.push(() => q.close().catch(() => undefined));
      const bw = new Worker<JobData, JobOutcome>(name, async () => ({ ok: true, bytes }), { connection: worker, prefix: keys.bull });
      bw.on('error', () => undefined);
      cleanups.push(() => bw.close(true).catch(() => undefined));
      await Promise.all([q.waitUntilReady(), bw.waitUntilReady()]);
      return q;
    };
    const q = await served('m', 1);
    const data: JobData = { kind: 'trace', owner: null, bytes: 1, received: Date.now(), ttlMs: 1000, maxDecodedBytes: 1000 };

    // the poll's follow and a request's, at once; the job goes on as soon as the second resolves
    const first = f.follow('m');
    await f.follow('m');
    await q.add('trace', data, { jobId: 'a' });
    await first;
    await until("job a's completed event", () => finished.get('a'), 15_000);
    expect(finished.get('a')).toEqual({ ok: true, bytes: 1 });

    // and a model followed by one caller alone
    const q2 = await served('m2', 2);
    await f.follow('m2');
    await q2.add('trace', data, { jobId: 'b' });
    await until("job b's completed event", () => finished.get('b'), 15_000);
    expect(finished.get('b')).toEqual({ ok: true, bytes: 2 });
  }, 60_000);
});
