// Key quotas and concurrency counted in Redis (src/scale/store.ts), as several fronts see them:
// two gates on one Redis stand for two fronts. A key's concurrency and rate hold over both; a
// slot given back is free at once; a front that dies (stops renewing) frees its slots after one
// lease; Redis out of reach is Unavailable (503), not a crash.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { RedisGate } from '../src/scale/store.js';
import { redisKeys } from '../src/scale/queues.js';
import { DEFAULT_LIMITS, type Admission } from '../src/serve/limits.js';
import { Unavailable } from '../src/serve/scheduler.js';
import type { KeyEntry } from '../src/serve/keys.js';
import { sleep, testRedis } from './scale-helpers.js';

let redis: Awaited<ReturnType<typeof testRedis>>;
const conns: Redis[] = [];
const gates: RedisGate[] = [];

function front(leaseMs = 30_000): RedisGate {
  const c = new Redis(redis.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false });
  c.on('error', () => undefined);
  conns.push(c);
  const g = new RedisGate(c, redisKeys(redis.prefix), leaseMs);
  gates.push(g);
  return g;
}

const key = (name: string, over: Partial<KeyEntry> = {}): KeyEntry => ({ name, hash: '0'.repeat(64), models: null, concurrency: null, ratePerMinute: null, created: '', ...over });
const ok = (a: Admission) => {
  if (!a.ok) throw new Error(`refused: ${a.message}`);
  return a.release;
};

beforeAll(async () => {
  redis = await testRedis();
});
afterAll(async () => {
  for (const g of gates) g.close();
  for (const c of conns) c.disconnect();
  await redis?.stop();
});

describe('key quotas and concurrency in Redis, over several fronts', () => {
  it("a key's concurrency holds over two fronts; a slot given back is free at once", async () => {
    const [a, b] = [front(), front()];
    await Promise.all(conns.map((c) => (c.status === 'ready' ? undefined : new Promise((r) => c.once('ready', r)))));
    const k = key('carol', { concurrency: 2 });
    const r1 = ok(await a.admit(k, DEFAULT_LIMITS));
    ok(await b.admit(k, DEFAULT_LIMITS));
    const third = await a.admit(k, DEFAULT_LIMITS);
    expect(third).toMatchObject({ ok: false, code: 'too_many_requests', retryAfter: 1 });
    expect((await b.admit(k, DEFAULT_LIMITS)).ok).toBe(false);
    // another key is not held up by carol's
    ok(await b.admit(key('dave', { concurrency: 1 }), DEFAULT_LIMITS));
    r1();
    r1(); // twice is once
    await sleep(50);
    ok(await b.admit(k, DEFAULT_LIMITS));
    expect((await a.admit(k, DEFAULT_LIMITS)).ok).toBe(false);
  });

  it("a key's rate quota is one bucket over both fronts, with the seconds to wait", async () => {
    const [a, b] = [front(), front()];
    await sleep(100);
    const k = key('erin', { ratePerMinute: 3 });
    const releases = [ok(await a.admit(k, DEFAULT_LIMITS)), ok(await b.admit(k, DEFAULT_LIMITS)), ok(await a.admit(k, DEFAULT_LIMITS))];
    releases.forEach((r) => r());
    const over = await b.admit(k, DEFAULT_LIMITS);
    expect(over).toMatchObject({ ok: false, code: 'rate_limited' });
    // one request a minute comes back every 20 s at 3 a minute
    expect((over as { retryAfter: number }).retryAfter).toBeGreaterThanOrEqual(19);
    expect((over as { retryAfter: number }).retryAfter).toBeLessThanOrEqual(20);
  });

  it('a front that stops renewing (it died) frees its slots after one lease; a live front keeps its own', async () => {
    const dying = front(1000);
    const live = front(1000);
    await sleep(100);
    const k = key('frank', { concurrency: 2 });
    ok(await dying.admit(k, DEFAULT_LIMITS));
    ok(await live.admit(k, DEFAULT_LIMITS));
    dying.close(); // no more renewals, as if its process were gone
    expect((await live.admit(k, DEFAULT_LIMITS)).ok).toBe(false);
    await sleep(1600);
    // the dead front's slot ran out; the live one's was renewed and still counts
    ok(await live.admit(k, DEFAULT_LIMITS));
    expect((await live.admit(k, DEFAULT_LIMITS)).ok).toBe(false);
  });

  it('Redis out of reach is Unavailable (503), not a crash', async () => {
    const g = front();
    await sleep(100);
    conns[conns.length - 1].disconnect();
    await expect(g.admit(key('gina'), DEFAULT_LIMITS)).rejects.toBeInstanceOf(Unavailable);
  });
});
