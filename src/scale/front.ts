// A front: the HTTP server of serve/server.ts (keys, validation, limits, jobs, metrics) with no
// models of its own. Its models are those workers published (liveness.ts), its key quotas are
// counted in Redis (store.ts), and a validated request goes on its model's BullMQ queue
// (RedisScheduler) instead of into this process. The front follows each job it took through the
// queue's event stream (stream.ts) and hands the client exactly one answer; it keeps the request
// body until then, so a job Redis lost (restarted without persistence) is queued again; another
// front's job it follows (lookup) has no body here, so that one fails as lost instead.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Queue } from 'bullmq';
import { Job, type ApiError } from '../serve/jobs.js';
import type { Metrics } from '../serve/metrics.js';
import { cancelError, QueueFull, Unavailable, type JobScheduler } from '../serve/scheduler.js';
import type { Limits } from '../serve/limits.js';
import type { ModelEntry, ServerBackend } from '../serve/server.js';
import { Catalog } from './liveness.js';
import { connect, INLINE_MAX_BYTES, modelQueue, parseOutcome, readReply, redisKeys, showUrl, within, type JobData, type JobOutcome, type RedisKeys } from './queues.js';
import { RedisGate } from './store.js';
import { EventFollower } from './stream.js';
import type { Redis } from 'ioredis';

export { checkRedisUrl } from './queues.js';

export interface FrontOptions {
  redis: string;
  prefix?: string;
  /** how often the catalog and the open jobs are checked (default 500 ms) */
  pollMs?: number;
  /** a model whose last worker left this recently still takes requests, which wait for a worker (default 60 s) */
  workerGraceMs?: number;
}

interface Open {
  job: Job;
  /** the request as it arrived; none for another front's job (lookup), which is never queued again */
  body?: Buffer;
  ttlMs: number;
  queuedAt: number;
}

/** Jobs on Redis queues, followed until they finish. */
export class RedisScheduler implements JobScheduler {
  readonly #open = new Map<string, Open>();
  readonly #queues = new Map<string, Queue<JobData, JobOutcome>>();
  readonly events: EventFollower;
  /** this front's reply channel: small results come on it from the workers (readReply) */
  readonly #reply = randomBytes(9).toString('base64url');
  readonly #replies: Redis;
  /** large request bodies and results: a connection without the fail-fast one's command timeout */
  readonly #bulk: Redis;
  #draining = false;
  /** waiting jobs over all models, as last counted */
  queued = 0;

  constructor(
    readonly url: string,
    readonly redis: Redis,
    readonly keys: RedisKeys,
    readonly limits: Limits,
    readonly metrics: Metrics,
    readonly log: Logger,
    readonly isUp: () => boolean,
    /** whether model `name` has a live worker, or had one within the grace period */
    readonly served: (name: string) => boolean,
  ) {
    this.events = new EventFollower(url, keys, {
      running: (id) => this.#open.get(id)?.job.setState('running'),
      token: (id, p) => this.#open.get(id)?.job.token(p.step, p.tokens),
      finished: (id, outcome) => void this.#finish(id, outcome),
      lost: (id, reason) => this.#lost(id, reason),
    }, redis);
    // a result on the reply channel settles its job at once; the completed event, and the read
    // of the result that follows it, stay the path for the rest (a large result, a message this
    // subscriber missed while reconnecting, another front's job)
    this.#replies = connect(url, { name: 'torchsight-front-reply' });
    this.#bulk = connect(url, { failFast: true, bulk: true, name: 'torchsight-front-bulk' });
    this.#replies.subscribe(keys.reply(this.#reply)).catch(() => undefined);
    this.#replies.on('messageBuffer', (_channel: Buffer, frame: Buffer) => {
      const r = readReply(frame);
      const job = r && this.#open.get(r.jobId)?.job;
      // a copy: the frame is a view into ioredis's read buffers, which the store would keep alive
      if (job && !job.finishedState) job.succeed(r.result.slice());
    });
  }

  get running(): number {
    let n = 0;
    for (const o of this.#open.values()) if (o.job.state === 'running') n++;
    return n;
  }

  /**
   * A model's queue, ready. A BullMQ Queue whose first command (its setup's INFO) fails because
   * Redis went away at that moment stays broken for good, so such a one is dropped and made again.
   */
  async queue(model: string): Promise<Queue<JobData, JobOutcome>> {
    let q = this.#queues.get(model);
    if (!q) {
      this.#queues.set(model, (q = modelQueue(this.keys, this.redis, model)));
      q.on('error', () => undefined);
    }
    try {
      await q.waitUntilReady();
    } catch (e) {
      if (this.#queues.get(model) === q) this.#queues.delete(model);
      void q.close().catch(() => undefined);
      throw e;
    }
    return q;
  }

  #unavailable(e?: unknown): Unavailable {
    return new Unavailable(`the job queue (Redis at ${showUrl(this.url)}) is unreachable${e ? ` (${(e as Error).message})` : ''}; try again shortly`);
  }

  async enqueue(job: Job, body: Uint8Array): Promise<void> {
    if (this.#draining) throw new QueueFull('the server is shutting down', 5);
    if (!this.isUp()) throw this.#unavailable();
    const open: Open & { body: Buffer } = { job, body: Buffer.from(body.buffer, body.byteOffset, body.byteLength), ttlMs: this.limits.resultTtlMs, queuedAt: Date.now() };
    try {
      await this.events.follow(job.model);
      await this.#add(open);
    } catch (e) {
      throw this.#unavailable(e);
    }
    // validated here; the worker decodes its own copy
    const req = job.request;
    job.request = undefined;
    req?.dispose();
    this.#open.set(job.id, open);
    job.setState('queued');
    void job.settled.then(() => this.#open.delete(job.id));
  }

  async #add(o: Open & { body: Buffer }): Promise<void> {
    const { job } = o;
    const data: JobData = { kind: job.kind, owner: job.owner, bytes: job.bytesIn, received: job.received, ttlMs: o.ttlMs, maxDecodedBytes: this.limits.maxRequestBytes * 4, reply: this.keys.reply(this.#reply) };
    // a small body also goes in the job, which the worker reads as it takes it. Every body is
    // stored apart as well (a worker of the previous release reads only that, so fronts and
    // workers can be upgraded one at a time). A small one's SET shares the queue's connection, so
    // it reaches Redis before the job does with no round trip between them; a large one goes on
    // the bulk connection (no command timeout), stored before the job is added
    const ttl = this.limits.timeoutMs + o.ttlMs + 60_000;
    const add = () => this.queue(job.model).then((q) => q.add(job.kind, data, { jobId: job.id }));
    if (o.body.byteLength <= INLINE_MAX_BYTES) {
      data.body = o.body.toString('base64');
      await Promise.all([this.redis.set(this.keys.request(job.id), o.body, 'PX', ttl), add()]);
    } else {
      await this.#bulk.set(this.keys.request(job.id), o.body, 'PX', ttl);
      await add();
    }
  }

  cancel(job: Job, reason: 'client' | 'timeout' | 'shutdown'): void {
    if (job.finishedState) return;
    job.cancelReason ??= reason;
    const id = job.id;
    void (async () => {
      await this.#markCancelled(id);
      // a job no worker took yet leaves the queue now; a running one (locked) stops at its worker
      const removed = await this.queue(job.model)
        .then((q) => q.remove(id))
        .catch(() => 0);
      if (removed) job.fail(cancelError(job, this.limits.timeoutMs), 'cancelled');
    })().catch((e) => this.log.warn({ job: id, err: (e as Error).message }, 'could not cancel the job in Redis'));
  }

  /**
   * Refuses new jobs and waits for the open ones, `limitMs` at most (a job whose worker died with
   * no other to take it over never finishes): then those still open fail with 503, and this
   * front's own are cancelled in Redis so that no worker runs them for nobody.
   */
  async drain(limitMs = this.limits.timeoutMs): Promise<void> {
    this.#draining = true;
    const open = [...this.#open.values()];
    if (await within(Promise.all(open.map((o) => o.job.settled)), limitMs)) return;
    for (const o of open) {
      if (o.job.finishedState) continue;
      o.job.fail({ status: 503, code: 'shutting_down', message: `the server shut down before the job finished (no answer from its workers within ${Math.round(limitMs / 1000)} s); send it again` });
      if (o.body) void this.#markCancelled(o.job.id).catch(() => undefined);
    }
  }

  /** Marks a job cancelled in Redis, for the worker that runs it or would take it. */
  #markCancelled(id: string): Promise<unknown> {
    return this.redis.multi().set(this.keys.cancel(id), '1', 'PX', this.limits.timeoutMs + 60_000).publish(this.keys.cancelChannel, id).exec();
  }

  async #finish(id: string, outcome: JobOutcome): Promise<void> {
    const job = this.#open.get(id)?.job;
    if (!job || job.finishedState) return;
    await settle(job, outcome, this.#bulk, this.keys);
  }

  #lost(id: string, reason: string): void {
    const job = this.#open.get(id)?.job;
    job?.fail({ status: 503, code: 'worker_lost', message: `the job failed on its workers (${reason.slice(0, 200)}); send it again` });
  }

  /**
   * The backstop for events a long outage hid: finished jobs are settled, lost ones queued again
   * (this front's own) or failed (another front's), and those of a model no worker serves any
   * more are failed rather than held forever.
   */
  async sweep(): Promise<void> {
    const now = Date.now();
    for (const o of [...this.#open.values()]) {
      if (o.job.finishedState || now - o.queuedAt < 1000) continue;
      const q = await this.queue(o.job.model);
      const state = await q.getJobState(o.job.id);
      if ((state === 'waiting' || state === 'prioritized') && !this.served(o.job.model) && (await q.remove(o.job.id).catch(() => 0))) {
        // no worker came back within the grace period: the request is not held forever
        o.job.fail({ status: 503, code: 'no_worker', message: `no worker serves model '${o.job.model}' any more; the request was not run` });
        continue;
      }
      if (state === 'active' && !this.served(o.job.model)) {
        // its worker died with none left to take it over (only live workers look for stalled
        // jobs): it would stay active for good. It leaves the queue if its lock ran out, so a
        // worker that comes later does not run it for nobody
        await q.remove(o.job.id).catch(() => 0);
        o.job.fail({ status: 503, code: 'worker_lost', message: `the worker running the job stopped and no worker serves model '${o.job.model}' any more; send it again` });
        continue;
      }
      if (state === 'completed' || state === 'failed') {
        const bull = await q.getJob(o.job.id);
        if (state === 'completed') await this.#finish(o.job.id, parseOutcome(bull?.returnvalue));
        else this.#lost(o.job.id, bull?.failedReason ?? 'failed');
      } else if (state === 'unknown' && !o.job.finishedState) {
        const { body } = o;
        if (!body) {
          // another front's job: its request is there, not here (that front queues it again)
          o.job.fail({ status: 503, code: 'request_lost', message: 'the job queue lost the job (Redis restarted) and this server does not hold its request; send it again' });
          continue;
        }
        // Redis lost it (restarted without persistence): the same job, queued again
        this.log.warn({ job: o.job.id, model: o.job.model }, 'job lost by Redis; queued again');
        o.queuedAt = Date.now();
        o.job.setState('queued');
        await this.#add({ ...o, body });
      }
    }
  }

  /**
   * Another front's job, from its queue and its result in Redis; undefined when no queue has it.
   * Throws Unavailable (503, try again) while Redis is out of reach: a missing job is final (404).
   */
  async lookup(id: string): Promise<Job | undefined> {
    if (!this.isUp()) throw this.#unavailable();
    for (const [name, q] of this.#queues) {
      let bull, state;
      try {
        bull = await q.getJob(id);
        state = bull && (await bull.getState());
      } catch (e) {
        throw this.#unavailable(e);
      }
      if (!bull) continue;
      const d = bull.data;
      const job = new Job(name, d.kind, d.owner, undefined, d.bytes, { id, received: d.received });
      // a lookup beside this one already follows it: one Job per id, or the other never settles
      const followed = this.#open.get(id)?.job;
      if (followed) return followed;
      if (state === 'completed') await settle(job, parseOutcome(bull.returnvalue), this.#bulk, this.keys);
      else if (state === 'failed') job.fail({ status: 503, code: 'worker_lost', message: `the job failed on its workers (${bull.failedReason}); send it again` });
      else {
        job.setState(state === 'active' ? 'running' : 'queued');
        // followed like this front's own, but without its body: a job Redis loses fails instead
        this.#open.set(id, { job, ttlMs: d.ttlMs, queuedAt: Date.now() });
        void job.settled.then(() => this.#open.get(id)?.job === job && this.#open.delete(id));
      }
      return job;
    }
    return undefined;
  }

  async close(): Promise<void> {
    this.#replies.disconnect();
    this.#bulk.disconnect();
    await this.events.close();
    for (const q of this.#queues.values()) await q.close().catch(() => undefined);
  }
}

async function settle(job: Job, outcome: JobOutcome, redis: Redis, keys: RedisKeys): Promise<void> {
  if (!outcome.ok) return job.fail(outcome.error, outcome.state);
  let bytes: Buffer | null = null;
  try {
    bytes = await redis.getBuffer(keys.result(job.id));
  } catch {
    // below
  }
  if (bytes) job.succeed(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  else job.fail({ status: 410, code: 'result_expired', message: 'the result is no longer kept (its TTL ran out, or Redis lost it)' } satisfies ApiError);
}

/** The backend of a front: models from the catalog, jobs on Redis queues, key counts in Redis. */
export async function frontBackend(o: FrontOptions, ctx: { metrics: Metrics; logger: Logger; limits: Limits }): Promise<ServerBackend> {
  const keys = redisKeys(o.prefix);
  const redis = connect(o.redis, { failFast: true, name: 'torchsight-front' });
  const catalog = new Catalog(redis, keys);
  const grace = o.workerGraceMs ?? 60_000;
  let up = false;
  let lastError = 'not connected yet';
  let usable = new Map<string, ModelEntry>();
  // each model's entry and when (this clock) a worker of it was last live: a model that vanished
  // from the catalog (Redis restarted without persistence, until a worker's next heartbeat
  // publishes it again) stays usable for the grace period, as one whose workers went quiet does
  const seen = new Map<string, { entry: ModelEntry; liveAt: number }>();
  const scheduler = new RedisScheduler(o.redis, redis, keys, ctx.limits, ctx.metrics, ctx.logger, () => up, (name) => usable.has(name));
  const gate = new RedisGate(redis, keys);

  const poll = async () => {
    try {
      await catalog.refresh();
      if (!up) ctx.logger.info({ redis: showUrl(o.redis) }, 'Redis reachable');
      up = true;
      const now = Date.now();
      usable = new Map();
      for (const [name, m] of catalog.entries) {
        if (m.workers === 0 && m.ago >= grace) continue;
        usable.set(name, m);
        seen.set(name, { entry: m, liveAt: now - Math.max(m.ago, 0) });
      }
      for (const [name, { entry, liveAt }] of seen) {
        if (usable.has(name)) continue;
        if (!catalog.entries.has(name) && now - liveAt < grace) usable.set(name, { ...entry, workers: 0 });
        else seen.delete(name);
      }
      let queued = 0;
      for (const name of usable.keys()) {
        await scheduler.events.follow(name);
        const waiting = await (await scheduler.queue(name)).getWaitingCount();
        ctx.metrics.queueDepth.set({ model: name }, waiting);
        queued += waiting;
      }
      scheduler.queued = queued;
      await scheduler.sweep();
    } catch (e) {
      if (up) ctx.logger.warn({ redis: showUrl(o.redis), err: (e as Error).message }, 'Redis unreachable');
      up = false;
      lastError = (e as Error).message;
    }
  };
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const loop = async () => {
    await poll();
    if (!stopped) timer = setTimeout(() => void loop(), o.pollMs ?? 500);
  };
  // the first poll waits for Redis a moment; a front that starts without it answers 503 until it comes
  await new Promise<void>((r) => {
    const t = setTimeout(r, 3000);
    redis.once('ready', () => {
      clearTimeout(t);
      r();
    });
    if (redis.status === 'ready') r();
  });
  await loop();

  const check = () => {
    if (!up || redis.status !== 'ready') throw new Unavailable(`the model catalog (Redis at ${showUrl(o.redis)}) is unreachable (${lastError}); try again shortly`);
  };
  return {
    models() {
      check();
      return usable;
    },
    listed() {
      check();
      return [...catalog.entries.values()].filter((m) => m.workers > 0);
    },
    scheduler,
    gate,
    async close() {
      stopped = true;
      clearTimeout(timer);
      gate.close();
      await scheduler.close();
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
