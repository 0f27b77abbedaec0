// The in-process scheduler: one FIFO queue per model, one forward at a time per model, requests
// that wait together merged into one batched forward (batch.ts), a time limit per request
// (the native cancel flag), results encoded and kept on their jobs. Behind several fronts the
// Redis queues (scale/front.ts) take its place behind the same methods (JobScheduler), and each
// worker runs one of these for the jobs it takes off them.
import type { Logger } from 'pino';
import { disposeValues, encodeResult, type DecodedRequest, type WireResult } from '../remote/envelope.js';
import type { ApiError, Job } from './jobs.js';
import type { ServedModel } from './runner.js';
import { batchKey, mergeRequests } from './batch.js';
import type { Metrics } from './metrics.js';

export interface SchedulerOptions {
  /** jobs waiting, over all models, at most */
  maxQueue: number;
  /** a request running longer is cancelled */
  timeoutMs: number;
  /** an encoded result larger than this fails with 413 */
  maxResultBytes: number;
  /** how long an idle model waits for more requests to batch with the first, under concurrent load (0: never) */
  batchWindowMs: number;
  /** requests merged into one forward at most */
  maxBatch: number;
  /** gzip results past this many bytes */
  compressAbove: number;
}

interface ModelQueue {
  model: ServedModel;
  queue: Job[];
  running: Job[];
  /** set while the model waits out a batch window */
  window?: NodeJS.Timeout;
  /** when a request last arrived while another was queued or running */
  lastOverlap: number;
}

/** What the server queues jobs on: this process's Scheduler, or Redis queues (scale/front.ts). */
export interface JobScheduler {
  /** jobs waiting, all models (behind Redis: as last counted) */
  readonly queued: number;
  readonly running: number;
  /** Queues a validated job; `body` is its request as it arrived. Throws QueueFull or Unavailable. */
  enqueue(job: Job, body: Uint8Array): void | Promise<void>;
  cancel(job: Job, reason: 'client' | 'timeout' | 'shutdown'): void;
  /** Refuses new jobs and resolves once the ones this process runs or follows have finished. */
  drain(): Promise<void>;
  /** A job this server did not take itself (another front's), while it is kept. */
  lookup?(id: string): Promise<Job | undefined>;
}

/** What the server needs is out of reach (Redis): 503 with Retry-After (seconds). */
export class Unavailable extends Error {
  readonly code = 'unavailable';
  constructor(
    message: string,
    readonly retryAfter = 2,
  ) {
    super(message);
  }
}

/** A refusal before queueing: 429 with Retry-After (seconds). */
export class QueueFull extends Error {
  constructor(
    message: string,
    readonly retryAfter: number,
  ) {
    super(message);
  }
}

export class Scheduler implements JobScheduler {
  readonly #models = new Map<string, ModelQueue>();
  #queued = 0;
  #draining = false;

  constructor(
    models: Iterable<ServedModel>,
    readonly options: SchedulerOptions,
    readonly metrics: Metrics,
    readonly log: Logger,
  ) {
    for (const model of models) this.#models.set(model.name, { model, queue: [], running: [], lastOverlap: 0 });
  }

  get queued(): number {
    return this.#queued;
  }

  get running(): number {
    let n = 0;
    for (const q of this.#models.values()) n += q.running.length;
    return n;
  }

  /** Queues a validated job (its request decoded); throws QueueFull when the queue is full. */
  enqueue(job: Job): void {
    const q = this.#models.get(job.model);
    if (!q) throw new Error(`no model '${job.model}'`);
    if (this.#draining) throw new QueueFull('the server is shutting down', 5);
    if (this.#queued >= this.options.maxQueue) throw new QueueFull(`the queue is full (${this.options.maxQueue} requests waiting); try again shortly`, 1);
    if (q.running.length > 0 || q.queue.length > 0) q.lastOverlap = Date.now();
    q.queue.push(job);
    this.#queued++;
    job.setState('queued', q.queue.length);
    this.metrics.queueDepth.set({ model: q.model.name }, q.queue.length);
    this.#pump(q);
  }

  /** Cancels a job: a queued one leaves the queue, a running one stops at its next module. */
  cancel(job: Job, reason: 'client' | 'timeout' | 'shutdown'): void {
    if (job.finishedState) return;
    job.cancelReason ??= reason;
    Atomics.store(job.cancel, 0, 1);
    const q = this.#models.get(job.model);
    const at = q ? q.queue.indexOf(job) : -1;
    if (q && at >= 0) {
      q.queue.splice(at, 1);
      this.#queued--;
      this.#positions(q);
      job.fail(cancelError(job, this.options.timeoutMs), 'cancelled');
    }
  }

  /** Refuses new jobs, cancels queued ones, and resolves once running ones have finished. */
  async drain(): Promise<void> {
    this.#draining = true;
    const running: Promise<void>[] = [];
    for (const q of this.#models.values()) {
      clearTimeout(q.window);
      for (const job of [...q.queue]) this.cancel(job, 'shutdown');
      for (const job of q.running) running.push(job.settled);
    }
    await Promise.all(running);
  }

  #positions(q: ModelQueue): void {
    q.queue.forEach((j, i) => j.setState('queued', i + 1));
    this.metrics.queueDepth.set({ model: q.model.name }, q.queue.length);
  }

  #pump(q: ModelQueue): void {
    if (q.running.length > 0 || q.queue.length === 0 || q.window) return;
    // under concurrent load an idle model waits a moment for requests to batch with
    const window = this.options.batchWindowMs;
    if (window > 0 && q.queue.length < this.options.maxBatch && Date.now() - q.lastOverlap < 1000 && batchKey(q.queue[0].request!) !== undefined) {
      q.window = setTimeout(() => {
        q.window = undefined;
        this.#start(q);
      }, window);
      return;
    }
    this.#start(q);
  }

  #start(q: ModelQueue): void {
    if (q.running.length > 0 || q.queue.length === 0) return;
    const head = q.queue[0];
    const key = batchKey(head.request!);
    const take: Job[] = [head];
    if (key !== undefined && this.options.maxBatch > 1)
      for (let i = 1; i < q.queue.length && take.length < this.options.maxBatch; i++) if (batchKey(q.queue[i].request!) === key) take.push(q.queue[i]);
    for (const j of take) q.queue.splice(q.queue.indexOf(j), 1);
    this.#queued -= take.length;
    this.#positions(q);
    q.running = take;
    void this.#run(q, take).finally(() => {
      q.running = [];
      this.#pump(q);
    });
  }

  async #run(q: ModelQueue, jobs: Job[]): Promise<void> {
    const { model } = q;
    const timers = jobs.map((job) => setTimeout(() => this.cancel(job, 'timeout'), this.options.timeoutMs));
    for (const job of jobs) job.setState('running');
    this.metrics.batchSize.observe({ model: model.name }, jobs.length);
    const t0 = performance.now();
    try {
      if (jobs.length === 1) {
        await this.#runOne(model, jobs[0]);
      } else {
        const batch = mergeRequests(jobs.map((j) => j.request!));
        // the batch stops only when every job in it is cancelled
        const cancel = new Int32Array(new SharedArrayBuffer(4));
        const poll = setInterval(() => jobs.every((j) => Atomics.load(j.cancel, 0) === 1) && Atomics.store(cancel, 0, 1), 5);
        let results: WireResult[] | undefined;
        try {
          const kind = jobs[0].kind;
          const merged = { ...batch.request, kind, tensorBytes: 0, dispose() {} };
          if (kind === 'generate') {
            // each job sees the steps its own rows are still running (a step all its rows had
            // finished before is one it does not run alone)
            const onStep = (tokens: number[], step: number) =>
              jobs.forEach((job, k) => {
                const [first, count] = batch.rows[k];
                const mine = tokens.slice(first, first + count);
                if (mine.some((t) => t >= 0)) job.token(step, mine);
              });
            results = batch.splitGeneration(await model.generate(merged, cancel, onStep));
          } else results = batch.split((await model.run(merged, cancel)).saved).map((saved) => ({ saved }));
        } catch (e) {
          // one request's error fails the batch: run each alone, so only that one fails
          this.log.debug({ err: (e as Error).message, jobs: jobs.length }, 'batched forward failed; running its requests alone');
        } finally {
          clearInterval(poll);
        }
        if (results) for (let i = 0; i < jobs.length; i++) await this.#finish(jobs[i], results[i]);
        else for (const job of jobs) await this.#runOne(model, job);
      }
    } finally {
      for (const t of timers) clearTimeout(t);
      this.metrics.forwardSeconds.observe({ model: model.name }, (performance.now() - t0) / 1000);
    }
  }

  async #runOne(model: ServedModel, job: Job): Promise<void> {
    if (job.finishedState) return;
    const req = job.request!;
    try {
      const result =
        req.kind === 'generate' ? await model.generate(req, job.cancel, (tokens, step) => job.token(step, tokens)) : await model.run(req, job.cancel);
      await this.#finish(job, result);
    } catch (e) {
      if (Atomics.load(job.cancel, 0) === 1 && job.cancelReason) job.fail(cancelError(job, this.options.timeoutMs), job.cancelReason === 'client' ? 'cancelled' : 'failed');
      else job.fail(runError(e));
    }
  }

  async #finish(job: Job, result: WireResult): Promise<void> {
    try {
      if (Atomics.load(job.cancel, 0) === 1 && job.cancelReason) {
        job.fail(cancelError(job, this.options.timeoutMs), job.cancelReason === 'client' ? 'cancelled' : 'failed');
        return;
      }
      const bytes = await encodeResult(result, { compressAbove: this.options.compressAbove });
      if (bytes.byteLength > this.options.maxResultBytes)
        job.fail({ status: 413, code: 'result_too_large', message: `the result takes ${bytes.byteLength} bytes; this server sends at most ${this.options.maxResultBytes}` });
      else job.succeed(bytes);
    } catch (e) {
      job.fail({ status: 500, code: 'internal', message: `could not encode the result: ${(e as Error).message}` });
    } finally {
      disposeValues(result.saved);
    }
  }
}

export function cancelError(job: Job, timeoutMs: number): ApiError {
  if (job.cancelReason === 'timeout')
    return { status: 504, code: 'timeout', message: `the request ran past this server's limit of ${timeoutMs} ms and was cancelled` };
  if (job.cancelReason === 'shutdown') return { status: 503, code: 'shutting_down', message: 'the server is shutting down; the request was not run' };
  return { status: 499, code: 'cancelled', message: 'the request was cancelled by its client' };
}

const MARK = /\u0001(\d+)\u0001/g;

/** A native error as the API gives it: its node markers become "node N", the first node named. */
export function runError(e: unknown): ApiError {
  const template = e instanceof Error ? e.message : String(e);
  const nodes = [...template.matchAll(MARK)].map((m) => Number(m[1]));
  const message = template.replace(MARK, (_, id: string) => `node ${id}`);
  return { status: 400, code: 'run_error', message, ...(nodes.length ? { node: nodes[0], template } : {}) };
}

export type { DecodedRequest };
