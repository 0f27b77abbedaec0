// The server's job store: finished jobs are kept for the result TTL, but never more than `max` of
// them nor more than `maxBytes` of results; the oldest finished go first, and a job still queued
// or running is never dropped.
import { afterEach, describe, expect, it } from 'vitest';
import { Job, JobStore } from '../src/serve/jobs.js';

const stores: JobStore[] = [];
const store = (ttlMs: number, max?: number, maxBytes?: number) => {
  const s = new JobStore(ttlMs, max, maxBytes);
  stores.push(s);
  return s;
};
const job = () => new Job('m', 'trace', null, undefined, 0);
// settled callbacks run as microtasks
const tick = () => new Promise((r) => setImmediate(r));

afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

describe('JobStore', () => {
  it('keeps at most `max` jobs, dropping the oldest finished ones and never an unfinished one', async () => {
    const s = store(60_000, 3);
    const jobs = Array.from({ length: 5 }, job);
    jobs.forEach((j) => s.add(j));
    // nothing finished: all five stay, past the bound
    expect(s.size).toBe(5);
    jobs[1].succeed(new Uint8Array(1));
    jobs[3].succeed(new Uint8Array(1));
    await tick();
    // each finished job went when it settled (5 held, bound 3); adding one more trims nothing
    // else: the three left and the new one are unfinished
    expect(s.size).toBe(3);
    s.add(job());
    expect(s.size).toBe(4);
    expect(s.get(jobs[1].id)).toBeUndefined();
    expect(s.get(jobs[3].id)).toBeUndefined();
    expect(s.get(jobs[0].id)).toBe(jobs[0]);
  });

  it('keeps at most `maxBytes` of results, counting each result once when its job finishes', async () => {
    const s = store(60_000, 100, 250);
    const jobs = Array.from({ length: 4 }, job);
    jobs.forEach((j) => s.add(j));
    jobs[0].succeed(new Uint8Array(100));
    jobs[1].succeed(new Uint8Array(100));
    await tick();
    expect(s.size).toBe(4);
    // 300 bytes > 250: the oldest result goes
    jobs[2].succeed(new Uint8Array(100));
    await tick();
    expect(s.get(jobs[0].id)).toBeUndefined();
    expect(s.get(jobs[1].id)).toBe(jobs[1]);
    expect(s.get(jobs[2].id)).toBe(jobs[2]);
    // a failed job holds no result bytes
    jobs[3].fail({ status: 400, code: 'x', message: 'x' });
    await tick();
    expect(s.size).toBe(3);
    // what was dropped is no longer counted: 200 bytes held, room for 50 more
    const small = job();
    s.add(small);
    small.succeed(new Uint8Array(50));
    await tick();
    expect([jobs[1], jobs[2], jobs[3], small].map((j) => s.get(j.id))).toEqual([jobs[1], jobs[2], jobs[3], small]);
  });

  it('counts a job added twice once, and a second object for the same id in place of the first', async () => {
    const s = store(60_000, 100, 250);
    const a = job();
    s.add(a);
    s.add(a);
    a.succeed(new Uint8Array(100));
    await tick();
    // two lookups of one job made two objects: the later replaces the earlier and its bytes
    const twin = new Job('m', 'trace', null, undefined, 0, { id: a.id, received: a.received });
    s.add(twin);
    twin.succeed(new Uint8Array(100));
    await tick();
    expect(s.get(a.id)).toBe(twin);
    // 100 bytes counted, not 200 or 300: another 100 fit beside it
    const b = job();
    s.add(b);
    b.succeed(new Uint8Array(100));
    await tick();
    expect([s.get(a.id), s.get(b.id)]).toEqual([twin, b]);
  });

  it('ignores a result that comes after the job ended', async () => {
    const s = store(60_000, 100, 150);
    const a = job();
    s.add(a);
    a.fail({ status: 499, code: 'cancelled', message: 'cancelled' }, 'cancelled');
    a.succeed(new Uint8Array(1000));
    await tick();
    expect(a.state).toBe('cancelled');
    expect(a.result).toBeUndefined();
    // nothing uncounted is held: 100 bytes fit
    const b = job();
    s.add(b);
    b.succeed(new Uint8Array(100));
    await tick();
    expect(s.get(b.id)).toBe(b);
  });

  it('drops finished jobs past their TTL on a sweep, and forgets their bytes', async () => {
    const s = store(1000, 100, 150);
    const a = job();
    s.add(a);
    a.succeed(new Uint8Array(100));
    await tick();
    s.sweep(Date.now() + 2000);
    expect(s.size).toBe(0);
    // a's 100 bytes are gone from the count: b's 100 fit
    const b = job();
    s.add(b);
    b.succeed(new Uint8Array(100));
    await tick();
    expect(s.get(b.id)).toBe(b);
  });
});
