// Every request is a job, as NDIF users know them: an id, a lifecycle (received, queued with its
// position, running, then done, failed or cancelled), events a client can follow (status changes
// and generated tokens), and a result kept for the result TTL so another process can reattach.
import { randomFillSync } from 'node:crypto';
import type { DecodedRequest, RequestKind } from '../remote/envelope.js';

export type JobState = 'received' | 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

/** An error as the API gives it: `{ error: { code, message, node?, template? } }` with `status`. */
export interface ApiError {
  status: number;
  code: string;
  message: string;
  /** the failing graph node, for the client to name the user's source line */
  node?: number;
  /** the native message with node markers (\u0001id\u0001) the client maps to source lines */
  template?: string;
}

export type JobEvent =
  | { type: 'status'; id: string; state: JobState; position?: number; error?: Omit<ApiError, 'status'> & { status: number } }
  | { type: 'token'; id: string; step: number; tokens: number[] };

export interface JobStatus {
  id: string;
  model: string;
  kind: RequestKind;
  state: JobState;
  /** 1-based place in its model's queue while queued */
  position?: number;
  received: string;
  started?: string;
  finished?: string;
  /** generation steps made so far */
  steps?: number;
  error?: ApiError;
}

// job ids: 12 random bytes each (unguessable: a job's result is fetched by its id), drawn from a
// pool filled 256 ids at a time; one system call per id was a visible share of a small request
const ID_BYTES = 12;
const idPool = Buffer.alloc(ID_BYTES * 256);
let idAt = idPool.length;
function newJobId(): string {
  if (idAt === idPool.length) {
    randomFillSync(idPool);
    idAt = 0;
  }
  idAt += ID_BYTES;
  return idPool.toString('base64url', idAt - ID_BYTES, idAt);
}

export class Job {
  readonly id: string;
  readonly received: number;
  started?: number;
  finished?: number;
  state: JobState = 'received';
  position?: number;
  error?: ApiError;
  /** the encoded result, once done */
  result?: Uint8Array;
  /** the native cancel flag: 1 abort, 2 stop (generation: a stop string was seen) */
  readonly cancel = new Int32Array(new SharedArrayBuffer(4));
  /** why it was cancelled, when it was */
  cancelReason?: 'client' | 'timeout' | 'shutdown';
  readonly tokens: { step: number; tokens: number[] }[] = [];
  readonly #listeners = new Set<(e: JobEvent) => void>();
  /** a client follows its events and will fetch the result: shutdown waits for that (a while) */
  awaitingFetch = false;
  #fetched!: () => void;
  readonly fetched = new Promise<void>((r) => (this.#fetched = r));
  #settled!: () => void;
  /** resolves when the job is done, failed or cancelled */
  readonly settled = new Promise<void>((r) => (this.#settled = r));

  constructor(
    readonly model: string,
    readonly kind: RequestKind,
    /** the key's name (null: no key) */
    readonly owner: string | null,
    public request: DecodedRequest | undefined,
    readonly bytesIn: number,
    /** a job known elsewhere (a Redis queue's) keeps its id and time of arrival */
    known?: { id: string; received: number },
  ) {
    this.id = known?.id ?? newJobId();
    this.received = known?.received ?? Date.now();
  }

  get finishedState(): boolean {
    return this.state === 'done' || this.state === 'failed' || this.state === 'cancelled';
  }

  on(f: (e: JobEvent) => void): () => void {
    this.#listeners.add(f);
    return () => this.#listeners.delete(f);
  }

  #emit(e: JobEvent): void {
    for (const f of this.#listeners) {
      try {
        f(e);
      } catch {
        // a listener's failure (a closed socket) is its own
      }
    }
  }

  statusEvent(): JobEvent {
    return { type: 'status', id: this.id, state: this.state, ...(this.position !== undefined ? { position: this.position } : {}), ...(this.error ? { error: this.error } : {}) };
  }

  setState(state: JobState, position?: number): void {
    if (this.finishedState) return;
    if (this.state === state && this.position === position) return;
    this.state = state;
    this.position = state === 'queued' ? position : undefined;
    if (state === 'running') this.started = Date.now();
    if (this.finishedState) {
      this.finished = Date.now();
      this.request?.dispose();
      this.request = undefined;
    }
    this.#emit(this.statusEvent());
    if (this.finishedState) {
      this.#settled();
      this.#listeners.clear();
    }
  }

  token(step: number, tokens: number[]): void {
    // a step already sent (a batched generation that failed is run again alone) is not repeated
    if (this.tokens.length > 0 && step <= this.tokens[this.tokens.length - 1].step) return;
    this.tokens.push({ step, tokens });
    this.#emit({ type: 'token', id: this.id, step, tokens });
  }

  /** The result (or error) was sent to a client. */
  delivered(): void {
    this.#fetched();
  }

  succeed(result: Uint8Array): void {
    // a late answer (a reply after a cancellation, a read that lost a race) changes nothing
    if (this.finishedState) return;
    this.result = result;
    this.setState('done');
  }

  fail(error: ApiError, state: 'failed' | 'cancelled' = 'failed'): void {
    if (this.finishedState) return;
    this.error = error;
    this.setState(state);
  }

  status(): JobStatus {
    const iso = (t?: number) => (t === undefined ? undefined : new Date(t).toISOString());
    return {
      id: this.id,
      model: this.model,
      kind: this.kind,
      state: this.state,
      ...(this.position !== undefined ? { position: this.position } : {}),
      received: iso(this.received)!,
      ...(this.started ? { started: iso(this.started) } : {}),
      ...(this.finished ? { finished: iso(this.finished) } : {}),
      ...(this.kind === 'generate' ? { steps: this.tokens.length } : {}),
      ...(this.error ? { error: this.error } : {}),
    };
  }
}

/** Jobs by id; finished ones are dropped `ttlMs` after they finish (and the oldest past `max`). */
export class JobStore {
  readonly #jobs = new Map<string, Job>();
  /** the result sizes counted in #bytes, by job id */
  readonly #sizes = new Map<string, number>();
  #bytes = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(
    readonly ttlMs: number,
    readonly max = 10_000,
    /** bytes of kept results at most; past it the oldest finished jobs go before their TTL */
    readonly maxBytes = 2 ** 31,
  ) {
    this.#timer = setInterval(() => this.sweep(), Math.min(Math.max(ttlMs / 4, 250), 60_000));
    this.#timer.unref();
  }

  add(job: Job): void {
    const held = this.#jobs.get(job.id);
    if (held === job) return;
    // another object for the same id (two lookups of one job raced): it goes, with its count
    if (held) this.#delete(job.id);
    this.#jobs.set(job.id, job);
    // a result is counted once, when its job finishes: no walk over every kept job per request
    void job.settled.then(() => {
      if (this.#jobs.get(job.id) !== job || this.#sizes.has(job.id)) return;
      const n = job.result?.byteLength ?? 0;
      this.#sizes.set(job.id, n);
      this.#bytes += n;
      this.#trim();
    });
    this.#trim();
  }

  /** Drops the oldest finished jobs (the map keeps insertion order) while past a bound; others are never dropped. */
  #trim(): void {
    for (const [id, j] of this.#jobs) {
      if (this.#jobs.size <= this.max && this.#bytes <= this.maxBytes) return;
      if (j.finishedState) this.#delete(id);
    }
  }

  #delete(id: string): void {
    this.#jobs.delete(id);
    this.#bytes -= this.#sizes.get(id) ?? 0;
    this.#sizes.delete(id);
  }

  get(id: string): Job | undefined {
    return this.#jobs.get(id);
  }

  sweep(now = Date.now()): void {
    for (const [id, j] of this.#jobs) if (j.finishedState && now - j.finished! > this.ttlMs) this.#delete(id);
  }

  /** Finished jobs whose client follows their events and has not fetched the result yet. */
  undelivered(): Promise<void>[] {
    const out: Promise<void>[] = [];
    for (const j of this.#jobs.values()) if (j.awaitingFetch) out.push(j.fetched);
    return out;
  }

  get size(): number {
    return this.#jobs.size;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
