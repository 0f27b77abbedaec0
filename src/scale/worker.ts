// A worker: takes the jobs of the models it holds off their Redis queues and runs them. Each
// BullMQ job becomes a job of the single-box Scheduler (serve/scheduler.ts), so jobs that wait
// together are run as one batched forward exactly as `serve` runs them: BullMQ hands a worker up
// to maxBatch jobs at once (its concurrency), and the Scheduler merges what is waiting. The
// result is written to Redis with a TTL before the job completes (a small one also goes straight
// to the front, on its reply channel); a worker that dies mid-job
// loses its lock, and BullMQ's stalled-job check gives the job to another worker. A job whose
// result is already written (its worker died between writing and completing) is not run again.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker, type Job as BullJob } from 'bullmq';
import type { Logger } from 'pino';
import { decodeRequest, EnvelopeError } from '../remote/envelope.js';
import { Job, type ApiError } from '../serve/jobs.js';
import { makeMetrics, type Metrics } from '../serve/metrics.js';
import type { ServedModel } from '../serve/runner.js';
import { Scheduler } from '../serve/scheduler.js';
import { Publisher } from './liveness.js';
import { CLOSE_LIMIT_MS, connect, forceDown, redisKeys, replyFrame, REPLY_MAX_BYTES, showUrl, within, type JobData, type JobOutcome } from './queues.js';
import { TokenReporter } from './stream.js';

export interface WorkerOptions {
  models: ServedModel[];
  redis: string;
  /** key prefix in Redis (default 'torchsight') */
  prefix?: string;
  /** jobs taken at once per model, and merged into one forward at most (default 16) */
  maxBatch?: number;
  /** under load, how long an idle model waits to batch (default 2 ms) */
  batchWindowMs?: number;
  /** a request running longer is cancelled (default 60 s) */
  timeoutMs?: number;
  /** an encoded result larger than this fails with 413 (default 256 MiB) */
  maxResultBytes?: number;
  /** how long a job's lock lasts without renewal: a dead worker's jobs run again after it (default 10 s) */
  lockMs?: number;
  /** heartbeat period (default 2 s; a worker is live for three of them) */
  heartbeatMs?: number;
  logger: Logger;
}

export interface RunningWorker {
  readonly id: string;
  readonly metrics: Metrics;
  /** Stops taking jobs, finishes the running ones, withdraws from the catalog, disposes the models. */
  close(): Promise<void>;
}

export async function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  const keys = redisKeys(o.prefix);
  const log = o.logger;
  const id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const redis = connect(o.redis, { name: 'torchsight-worker' });
  const sub = connect(o.redis, { name: 'torchsight-worker-cancel' });
  const metrics = makeMetrics();
  const maxBatch = o.maxBatch ?? 16;
  const timeoutMs = o.timeoutMs ?? 60_000;
  const scheduler = new Scheduler(
    o.models,
    { maxQueue: Number.MAX_SAFE_INTEGER, timeoutMs, maxResultBytes: o.maxResultBytes ?? 256 * 1024 * 1024, batchWindowMs: o.batchWindowMs ?? 2, maxBatch, compressAbove: 64 * 1024 },
    metrics,
    log,
  );
  /** Redis job id -> the local job running it */
  const running = new Map<string, Job>();

  // cancellations from any front: the local job stops at its next module
  await sub.subscribe(keys.cancelChannel);
  sub.on('message', (_ch, jobId: string) => {
    const job = running.get(jobId);
    if (job) scheduler.cancel(job, 'client');
  });

  const publisher = new Publisher(redis, keys, id, o.models, o.heartbeatMs ?? 2000, (e) => log.warn({ err: e.message }, 'heartbeat failed'));
  await publisher.beat();

  const fail = (error: ApiError, state: 'failed' | 'cancelled' = 'failed'): JobOutcome => ({ ok: false, state, error });

  /** What Redis holds for a job a worker takes: a result already written (its last worker died before completing it), a cancellation, and (unless it came inline) the body. */
  const lookup = async (jobId: string, withBody: boolean) => {
    const p = redis.pipeline().strlen(keys.result(jobId)).exists(keys.cancel(jobId));
    if (withBody) p.getBuffer(keys.request(jobId));
    const r = (await p.exec())!;
    return { answered: r[0][1] as number, cancelled: (r[1][1] as number) > 0, body: r[2]?.[1] as Buffer | null | undefined };
  };

  async function take(model: ServedModel, bull: BullJob<JobData, JobOutcome>): Promise<JobOutcome> {
    const jobId = bull.id!;
    const data = bull.data;
    const inline = data.body !== undefined;
    // a small body came with the job: its checks run beside the decoding and the forward, one
    // round trip less before it starts; a large one is read first, with them
    const checks = inline ? lookup(jobId, false).catch(() => ({ answered: 0, cancelled: false, body: undefined })) : lookup(jobId, true);
    let body: Buffer | null | undefined;
    if (inline) body = Buffer.from(data.body!, 'base64');
    else {
      const c = await checks;
      if (c.answered > 0) return { ok: true, bytes: c.answered };
      if (c.cancelled) return fail({ status: 499, code: 'cancelled', message: 'the request was cancelled by its client' }, 'cancelled');
      body = c.body;
    }
    if (!body) return fail({ status: 503, code: 'request_lost', message: 'the request was no longer in Redis when a worker took it; send it again' });
    let decoded;
    try {
      decoded = await decodeRequest(body, { maxBytes: data.maxDecodedBytes, device: model.device });
    } catch (e) {
      if (e instanceof EnvelopeError) return fail({ status: e.status, code: e.code, message: e.message });
      throw e;
    }
    const job = new Job(model.name, data.kind, data.owner, decoded, body.byteLength, { id: jobId, received: data.received });
    const reporter = new TokenReporter(bull);
    reporter.attach(job);
    running.set(jobId, job);
    let answered = 0;
    try {
      scheduler.enqueue(job);
      if (inline) {
        const c = await checks;
        answered = c.answered;
        if (answered > 0 || c.cancelled) scheduler.cancel(job, 'client');
      }
      await job.settled;
      await reporter.flush();
    } finally {
      running.delete(jobId);
    }
    if (answered > 0) return { ok: true, bytes: answered };
    log.info({ job: jobId, model: model.name, kind: data.kind, state: job.state, ms: Date.now() - (job.started ?? job.received), code: job.error?.code }, 'job finished');
    if (job.state !== 'done' || !job.result) return fail(job.error ?? { status: 500, code: 'internal', message: 'the job ended without a result' }, job.state === 'cancelled' ? 'cancelled' : 'failed');
    const bytes = Buffer.from(job.result.buffer, job.result.byteOffset, job.result.byteLength);
    // Not awaited: BullMQ completes the job with a script on this same connection, which Redis
    // runs after this transaction, so the front that reads the completion finds the result; one
    // round trip less on every request's path. A write Redis refuses is logged; the front then
    // answers 410 (result_expired), as for a result whose TTL ran out.
    const write = redis.multi().set(keys.result(jobId), bytes, 'PX', Math.max(1000, data.ttlMs)).del(keys.request(jobId));
    // and a small one straight to the front that holds the client, before BullMQ's completion;
    // not a generation's, whose tokens come on the event stream and must all reach the client first
    if (data.reply && data.kind !== 'generate' && bytes.byteLength <= REPLY_MAX_BYTES) write.publish(data.reply, replyFrame(jobId, bytes));
    write
      .exec()
      .catch((e: Error) => log.warn({ job: jobId, err: e.message }, 'could not write the result to Redis'));
    return { ok: true, bytes: bytes.byteLength };
  }

  const lockMs = o.lockMs ?? 10_000;
  const workers = o.models.map((model) => {
    const w = new Worker<JobData, JobOutcome>(model.name, (bull) => take(model, bull), {
      connection: redis,
      prefix: keys.bull,
      concurrency: maxBatch,
      lockDuration: lockMs,
      stalledInterval: Math.max(500, Math.round(lockMs / 2)),
      // a job whose worker died is run again; twice more at most
      maxStalledCount: 2,
      // the results are torchsight's own keys; BullMQ keeps finished jobs for a reattaching front
      removeOnComplete: { age: 3600, count: 10_000 },
      removeOnFail: { age: 3600, count: 10_000 },
    });
    w.on('error', (e) => log.warn({ err: e.message, model: model.name }, 'queue error'));
    w.on('failed', (j, e) => log.warn({ job: j?.id, err: e.message, model: model.name }, 'job failed in the worker'));
    return w;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  log.info({ worker: id, models: o.models.map((m) => m.name), redis: showUrl(o.redis) }, 'worker ready');

  /** Resolves once no local job has run for `ms` (jobs taken while it waits included), or `done()`. */
  const quiet = async (ms: number, done: () => boolean) => {
    let since = Date.now();
    while (!done()) {
      if (running.size) {
        await Promise.all([...running.values()].map((j) => j.settled));
        since = Date.now();
      } else if (Date.now() - since >= ms) return;
      else await sleep(100);
    }
  };

  let closing: Promise<void> | undefined;
  return {
    id,
    metrics,
    close() {
      closing ??= (async () => {
        // stop taking jobs; the running ones finish and complete. BullMQ's close then waits for
        // each connection's 'end', which a client reconnecting to a Redis that is away never
        // emits (not even once Redis is back): a close still waiting CLOSE_LIMIT_MS after the
        // last local job ended forces the connections down instead
        let settled = false;
        const closed = Promise.all(workers.map((w) => w.close())).then(
          () => true,
          () => true,
        );
        const clean = await Promise.race([closed, quiet(CLOSE_LIMIT_MS, () => settled).then(() => false)]);
        settled = true;
        await within(publisher.stop(), CLOSE_LIMIT_MS);
        await scheduler.drain();
        sub.disconnect();
        if (!clean || !(await within(redis.quit(), CLOSE_LIMIT_MS))) forceDown(redis);
        for (const m of o.models) await m.dispose();
      })();
      return closing;
    },
  };
}
