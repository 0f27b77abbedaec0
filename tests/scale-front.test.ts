// A front's BullMQ objects across a Redis outage (src/scale/front.ts). BullMQ sets a Queue up with
// one INFO; when the connection dies with that INFO unanswered, the Queue stays broken for good,
// and a front that kept it answered 503 forever after Redis came back (seen once in CI: a front
// that made its model's queue as the test stopped Redis).
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { RedisScheduler } from '../src/scale/front.js';
import { connect, redisKeys, type JobData } from '../src/scale/queues.js';
import { DEFAULT_LIMITS } from '../src/serve/limits.js';
import { makeMetrics } from '../src/serve/metrics.js';
import { freePort, RedisProcess, sleep, until } from './scale-helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe("a front's model queue across a Redis outage", () => {
  it('a queue whose setup Redis never answered is made again once Redis is back', async () => {
    const own = new RedisProcess(await freePort());
    await own.start();
    cleanup.push(() => own.stop());
    // the front's own connection: commands fail at once while Redis is away
    const redis = connect(own.url, { failFast: true });
    cleanup.push(() => redis.disconnect());
    await until('the connection', () => redis.status === 'ready', 10_000, 10);
    const scheduler = new RedisScheduler(own.url, redis, redisKeys('front-outage'), DEFAULT_LIMITS, makeMetrics(), pino({ level: 'silent' }), () => true, () => true);
    cleanup.push(() => scheduler.close());
    const usable = async () => {
      const q = await scheduler.queue('gpt2');
      await q.getWaitingCount();
      return q;
    };

    // Redis stops answering, the queue sends its INFO, then Redis dies with it unanswered
    own.child!.kill('SIGSTOP');
    const first = usable();
    await sleep(50);
    own.child!.kill('SIGKILL');
    await expect(first).rejects.toThrow();
    // long enough for ioredis to give the pending command up (two reconnections that fail)
    await sleep(1000);
    await own.start();

    const q = await until('the queue back', () => usable().catch(() => undefined), 15_000);
    expect(await q.getWaitingCount()).toBe(0);
    const data: JobData = { kind: 'trace', owner: null, bytes: 0, received: Date.now(), ttlMs: 1000, maxDecodedBytes: 1024 };
    await q.add('trace', data, { jobId: 'after-the-outage' });
    expect(await q.getWaitingCount()).toBe(1);
    expect((await q.getJob('after-the-outage'))?.data).toEqual(data);
  });
});
