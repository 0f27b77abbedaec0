// A job's events between a worker and the front that holds its client, over BullMQ's event stream
// of the model's queue (a Redis stream): the worker reports each generated step as the job's
// progress, BullMQ itself reports active, completed and failed; each front reads the stream
// (QueueEvents, one blocking connection per model) and hands the events of the jobs it follows
// to them. A stream resumes where it left off after a reconnection, so no event is lost to a
// short outage; a front still checks its open jobs now and then (front.ts) for longer ones.
import { once } from 'node:events';
import { QueueEvents, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Job } from '../serve/jobs.js';
import { CLOSE_LIMIT_MS, connect, FAIL_FAST_TIMEOUT_MS, forceDown, parseOutcome, within, type JobOutcome, type RedisKeys, type TokenProgress } from './queues.js';

/** A worker's side: the local job's tokens, in order, as progress of the Redis job. */
export class TokenReporter {
  #chain: Promise<unknown> = Promise.resolve();

  constructor(readonly bull: BullJob) {}

  attach(job: Job): void {
    job.on((e) => {
      if (e.type !== 'token') return;
      const p: TokenProgress = { step: e.step, tokens: e.tokens };
      // a worker that lost the job (stalled) cannot report: the one that took it over does
      this.#chain = this.#chain.then(() => this.bull.updateProgress(p as unknown as object)).catch(() => undefined);
    });
  }

  /** Resolves once every step reported so far is on the stream (before the job completes). */
  flush(): Promise<unknown> {
    return this.#chain;
  }
}

export interface FollowHandlers {
  running(id: string): void;
  token(id: string, p: TokenProgress): void;
  finished(id: string, outcome: JobOutcome): void;
  lost(id: string, reason: string): void;
}

/** A model's stream as a front reads it: `ready` once its QueueEvents is set up. */
interface Stream {
  connection: Redis;
  events?: QueueEvents;
  ready?: Promise<void>;
}

/** A front's side: one QueueEvents per model queue, events of any job passed to `handlers`. */
export class EventFollower {
  readonly #streams = new Map<string, Stream>();

  constructor(
    readonly url: string,
    readonly keys: RedisKeys,
    readonly handlers: FollowHandlers,
    /** the front's fail-fast connection (the caller's to close), for a stream's last id as a model is first followed */
    readonly redis: Redis,
  ) {}

  /**
   * Follows model `name`'s queue from now on (once per model). Every caller waits for the same
   * setup, and every event added to the stream after it resolves reaches the handlers.
   */
  async follow(name: string): Promise<void> {
    let s = this.#streams.get(name);
    if (!s) {
      // BullMQ reads on a copy of its own: this one never connects
      const stream: Stream = { connection: connect(this.url, { name: 'torchsight-front-events', copiesOnly: true }) };
      stream.ready = (async () => {
        stream.events = await this.#reader(name, stream.connection);
        await stream.events.waitUntilReady();
      })().catch((e: unknown) => {
        // BullMQ keeps one whose setup failed broken for good: the next call makes another
        if (this.#streams.get(name) === stream) this.#streams.delete(name);
        void this.#down(stream);
        throw e;
      });
      this.#streams.set(name, (s = stream));
    }
    await s.ready;
  }

  /**
   * A QueueEvents from the stream's last event on. QueueEvents would start at '$' once its own
   * setup is done, missing what was added before its first read; the id read first is where it
   * starts instead, so nothing added once follow() resolved is lost.
   */
  async #reader(name: string, connection: Redis): Promise<QueueEvents> {
    // a fail-fast connection refuses commands until connected: a follow may come as it connects
    // (the front's first poll) or reconnects (a moment after an outage), so it waits a little
    const r = this.redis;
    if (r.status === 'connecting' || r.status === 'connect' || r.status === 'reconnecting') await once(r, 'ready', { signal: AbortSignal.timeout(FAIL_FAST_TIMEOUT_MS) }).catch(() => undefined);
    const last = (await r.xrevrange(`${this.keys.bull}:${name}:events`, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
    const events = new QueueEvents(name, { connection, prefix: this.keys.bull, blockingTimeout: 5000, lastEventId: last });
    events.on('error', () => undefined);
    const h = this.handlers;
    events.on('active', ({ jobId }) => h.running(jobId));
    events.on('progress', ({ jobId, data }) => {
      const p = data as unknown as TokenProgress;
      if (p && typeof p === 'object' && Number.isInteger(p.step) && Array.isArray(p.tokens)) h.token(jobId, p);
    });
    events.on('completed', ({ jobId, returnvalue }) => h.finished(jobId, parseOutcome(returnvalue)));
    events.on('failed', ({ jobId, failedReason }) => h.lost(jobId, failedReason));
    return events;
  }

  /** Closes one stream: BullMQ's close, or (when it waits on a Redis that is away) the connections forced down. */
  async #down(s: Stream): Promise<void> {
    if (s.events) await within(s.events.close(), CLOSE_LIMIT_MS);
    forceDown(s.connection);
  }

  async close(): Promise<void> {
    const all = [...this.#streams.values()];
    this.#streams.clear();
    await Promise.all(all.map((s) => this.#down(s)));
  }
}
