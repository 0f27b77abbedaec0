// A front's BullMQ objects and open jobs across failures (src/scale/front.ts). BullMQ sets a Queue
// up with one INFO; when the connection dies with that INFO unanswered, the Queue stays broken for
// good, and a front that kept it answered 503 forever after Redis came back (seen once in CI: a
// front that made its model's queue as the test stopped Redis). Then what a front does when Redis
// restarts empty (its own job queued again with its body, another front's failed; a model's workers
// still count for the grace period), when a job's only worker dies mid-run, when it shuts down
// with jobs no worker will finish, and when a job is looked up while Redis is out of reach.
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { frontBackend, RedisScheduler } from '../src/scale/front.js';
import { Publisher } from '../src/scale/liveness.js';
import { connect, redisKeys, type JobData, type JobOutcome } from '../src/scale/queues.js';
import { Job } from '../src/serve/jobs.js';
import { DEFAULT_LIMITS } from '../src/serve/limits.js';
import { makeMetrics } from '../src/serve/metrics.js';
import type { ServedModel } from '../src/serve/runner.js';
import { Unavailable } from '../src/serve/scheduler.js';
import { freePort, RedisProcess, sleep, until } from './scale-helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe("a front's model queue across a Redis outage", () => {
  it('a queue whose setup Redis never answered is made again once Redis is back', async () => {
    const { own, redis } = await ownRedis();
    const front = scheduler(own.url, redis, 'front-outage', () => true);
    const usable = async () => {
      const q = await front.queue('gpt2');
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

const silent = pino({ level: 'silent' });

/** A Redis of the test's own, and a connection to it as a front makes (failing fast while Redis is away). */
async function ownRedis(): Promise<{ own: RedisProcess; redis: Redis }> {
  const own = new RedisProcess(await freePort());
  await own.start();
  cleanup.push(() => own.stop());
  const redis = connect(own.url, { failFast: true });
  cleanup.push(() => redis.disconnect());
  await until('the connection', () => redis.status === 'ready', 10_000, 10);
  return { own, redis };
}

function scheduler(url: string, redis: Redis, prefix: string, served: () => boolean, isUp = () => true): RedisScheduler {
  const s = new RedisScheduler(url, redis, redisKeys(prefix), DEFAULT_LIMITS, makeMetrics(), silent, isUp, served);
  cleanup.push(() => s.close());
  return s;
}

/** A worker that takes one job and then does nothing with it, as one that died mid-run leaves it: active, its lock never renewed. */
async function takeAndDie(url: string, prefix: string): Promise<{ job: NonNullable<Awaited<ReturnType<Worker<JobData, JobOutcome>['getNextJob']>>>; token: string }> {
  const w = new Worker<JobData, JobOutcome>('m', null, { connection: connect(url), prefix: redisKeys(prefix).bull });
  cleanup.push(() => w.close(true));
  const token = 'dead-worker';
  const job = await until('the worker takes the job', () => w.getNextJob(token, { block: false }), 10_000);
  return { job, token };
}

/** What a worker publishes of a model; the front reads only these fields. */
const servedModel = (name: string) =>
  ({
    name,
    manifest: { architecture: 'GPT2LMHeadModel' },
    tree: name,
    device: 'cpu',
    dtype: 'float32',
    target: { sites: ['lm_head'], ops: [], applicable: new Set<string>(), vocabSize: 10, maxPositions: 10 },
    tokenizerJson: Buffer.from('{}'),
  }) as unknown as ServedModel;

/** Whether `p` settles within `ms`. */
const settlesWithin = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true), sleep(ms).then(() => false)]);

describe('a front when Redis restarts empty', () => {
  it("fails another front's job it follows (it has no body to queue again); the owning front queues its own again with its body", async () => {
    const { own, redis } = await ownRedis();
    const other = connect(own.url, { failFast: true });
    cleanup.push(() => other.disconnect());
    await until('the second connection', () => other.status === 'ready', 10_000, 10);
    const owner = scheduler(own.url, redis, 'lost', () => true);
    const follower = scheduler(own.url, other, 'lost', () => true);
    await follower.queue('m');
    const job = new Job('m', 'trace', null, undefined, 5);
    const body = Buffer.from('the request body');
    await owner.enqueue(job, body);
    const looked = await follower.lookup(job.id);
    expect(looked?.id).toBe(job.id);
    expect(looked?.state).toBe('queued');

    // Redis restarts without persistence: the job is gone
    await redis.flushall();
    await until('the follower gives it up', async () => {
      await follower.sweep();
      return looked!.finishedState;
    }, 10_000);
    expect(looked!.state).toBe('failed');
    expect(looked!.error).toMatchObject({ status: 503, code: 'request_lost' });
    expect(looked!.error!.message).toMatch(/send it again/);
    const q = await owner.queue('m');
    // nothing went back on the queue without its body
    expect(await q.getJob(job.id)).toBeUndefined();

    const again = await until('the owner queues it again', async () => {
      await owner.sweep();
      return q.getJob(job.id);
    }, 10_000);
    expect(Buffer.from(again.data.body!, 'base64')).toEqual(body);
    expect(await redis.getBuffer(redisKeys('lost').request(job.id))).toEqual(body);
    expect(job.state).toBe('queued');
  });

  for (const graceMs of [undefined, 1000])
    it(graceMs ? 'still gives a model up once the grace period has passed' : 'holds a model whose workers are gone from the catalog for the grace period', async () => {
      const { own } = await ownRedis();
      const prefix = `grace${graceMs ?? ''}`;
      const keys = redisKeys(prefix);
      const workerConn = connect(own.url);
      const publisher = new Publisher(workerConn, keys, 'w1', [servedModel('m')], 60_000, () => undefined);
      cleanup.push(() => {
        void publisher.stop().catch(() => undefined);
        workerConn.disconnect();
      });
      await publisher.beat();
      const be = await frontBackend({ redis: own.url, prefix, pollMs: 100, workerGraceMs: graceMs }, { metrics: makeMetrics(), logger: silent, limits: DEFAULT_LIMITS });
      cleanup.push(() => be.close());
      expect([...be.models().keys()]).toEqual(['m']);
      const front = be.scheduler as RedisScheduler;
      const job = new Job('m', 'trace', null, undefined, 3);
      await front.enqueue(job, new Uint8Array([1, 2, 3]));

      // Redis restarts without persistence, and no worker has beaten since
      await own.stop();
      await own.start();
      const q = await until('the job queued again', async () => {
        const q = await front.queue('m');
        return (await q.getJobState(job.id)) === 'waiting' && q;
      }, 15_000, 50);
      if (graceMs) {
        await until('the job given up', () => job.finishedState, 15_000);
        expect(job.error).toMatchObject({ status: 503, code: 'no_worker' });
        await until('the model gone', () => !be.models().has('m'), 15_000);
        return;
      }
      // several sweeps past their one-second guard: the job waits for a worker, the model takes requests
      await sleep(1500);
      expect(job.state).toBe('queued');
      expect(await q.getJobState(job.id)).toBe('waiting');
      expect(be.models().has('m')).toBe(true);
      expect(be.models().get('m')!.target.sites).toEqual(['lm_head']);
      // the worker's next heartbeat publishes the model again
      await publisher.beat();
      await until('the model listed again', () => be.listed?.().some((m) => m.name === 'm' && m.workers === 1), 15_000);
      expect(job.state).toBe('queued');
    });
});

describe("a front's jobs no worker will finish", () => {
  it('fails an active job whose worker died once no worker serves its model', async () => {
    const { own, redis } = await ownRedis();
    let served = true;
    const front = scheduler(own.url, redis, 'dead', () => served);
    const job = new Job('m', 'trace', null, undefined, 3);
    await front.enqueue(job, new Uint8Array([1, 2, 3]));
    await takeAndDie(own.url, 'dead');
    const q = await front.queue('m');
    expect(await q.getJobState(job.id)).toBe('active');
    // while the model is served (within the grace period) a worker's stalled check may still take it over
    await sleep(1100);
    await front.sweep();
    expect(job.finishedState).toBe(false);

    served = false;
    await until('the job failed', async () => {
      await front.sweep();
      return job.finishedState;
    }, 10_000);
    expect(job.state).toBe('failed');
    expect(job.error).toMatchObject({ status: 503, code: 'worker_lost' });
    expect(job.error!.message).toMatch(/send it again/);
  });

  it('drain gives up after its limit: open jobs fail 503 once, and a late result changes nothing', async () => {
    const { own, redis } = await ownRedis();
    const front = scheduler(own.url, redis, 'drain', () => true);
    const job = new Job('m', 'trace', null, undefined, 3);
    await front.enqueue(job, new Uint8Array([1, 2, 3]));
    const { job: taken, token } = await takeAndDie(own.url, 'drain');
    // the final states the client is told (a 'running' may come first, from the worker's taking it)
    const answers: string[] = [];
    job.on((e) => e.type === 'status' && ['done', 'failed', 'cancelled'].includes(e.state) && answers.push(e.state));

    expect(await settlesWithin(front.drain(300), 10_000)).toBe(true);
    expect(job.state).toBe('failed');
    expect(job.error).toMatchObject({ status: 503, code: 'shutting_down' });
    expect(answers).toEqual(['failed']);
    // this front's own job is cancelled in Redis, for a worker that would take it later
    expect(await redis.get(redisKeys('drain').cancel(job.id))).toBe('1');

    // the worker answers after all: the client keeps the one answer it had
    await redis.set(redisKeys('drain').result(job.id), Buffer.from([9, 9, 9]));
    await taken.moveToCompleted({ ok: true, bytes: 3 }, token, false);
    await front.sweep();
    await sleep(300);
    expect(job.state).toBe('failed');
    expect(job.result).toBeUndefined();
    expect(job.error!.code).toBe('shutting_down');
  });
});

describe("looking up another front's job", () => {
  it('is Unavailable (503, try again) while Redis is out of reach, not a missing job', async () => {
    const { own, redis } = await ownRedis();
    let up = true;
    const front = scheduler(own.url, redis, 'lookup', () => true, () => up);
    await front.queue('m');
    // Redis answers: an id no queue has is missing (404)
    expect(await front.lookup('AAAAAAAAAAAAAAAA')).toBeUndefined();
    // the front knows Redis is down
    up = false;
    await expect(front.lookup('AAAAAAAAAAAAAAAA')).rejects.toBeInstanceOf(Unavailable);
    // the front has not noticed yet: the read itself fails
    up = true;
    await own.stop();
    const e = await front.lookup('AAAAAAAAAAAAAAAA').catch((e: unknown) => e);
    expect(e).toBeInstanceOf(Unavailable);
    expect((e as Unavailable).message).toMatch(/unreachable.*try again/);
  });
});
