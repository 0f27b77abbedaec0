// A job's events between a worker and the front that holds its client, over BullMQ's event stream
// of the model's queue (a Redis stream): the worker reports each generated step as the job's
// progress, BullMQ itself reports active, completed and failed; each front reads the stream
// (QueueEvents, one blocking connection per model) and hands the events of the jobs it follows
// to them. A stream resumes where it left off after a reconnection, so no event is lost to a
// short outage; a front still checks its open jobs now and then (front.ts) for longer ones.
import { QueueEvents, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Job } from '../serve/jobs.js';
import { connect, parseOutcome, type JobOutcome, type RedisKeys, type TokenProgress } from './queues.js';

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

/** A front's side: one QueueEvents per model queue, events of any job passed to `handlers`. */
export class EventFollower {
  readonly #streams = new Map<string, { events: QueueEvents; connection: Redis }>();

  constructor(
    readonly url: string,
    readonly keys: RedisKeys,
    readonly handlers: FollowHandlers,
  ) {}

  /** Follows model `name`'s queue from now on (once per model); resolves when it reads. */
  async follow(name: string): Promise<void> {
    if (this.#streams.has(name)) return;
    const connection = connect(this.url, { name: 'torchsight-front-events' });
    const events = new QueueEvents(name, { connection, prefix: this.keys.bull, blockingTimeout: 5000 });
    events.on('error', () => undefined);
    this.#streams.set(name, { events, connection });
    const h = this.handlers;
    events.on('active', ({ jobId }) => h.running(jobId));
    events.on('progress', ({ jobId, data }) => {
      const p = data as unknown as TokenProgress;
      if (p && typeof p === 'object' && Number.isInteger(p.step) && Array.isArray(p.tokens)) h.token(jobId, p);
    });
    events.on('completed', ({ jobId, returnvalue }) => h.finished(jobId, parseOutcome(returnvalue)));
    events.on('failed', ({ jobId, failedReason }) => h.lost(jobId, failedReason));
    try {
      await events.waitUntilReady();
    } catch (e) {
      // BullMQ keeps one whose setup failed broken for good: the next call makes another
      this.#streams.delete(name);
      void events.close().catch(() => undefined);
      connection.disconnect();
      throw e;
    }
  }

  async close(): Promise<void> {
    for (const { events, connection } of this.#streams.values()) {
      await events.close().catch(() => undefined);
      connection.disconnect();
    }
    this.#streams.clear();
  }
}
