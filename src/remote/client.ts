// The HTTP client of `torchsight serve`: sends an encoded request, follows its job (a status
// line on stderr as NDIF shows it, unless quiet), streams generated tokens, and returns the
// decoded result. Refusals that say "later" (429, 503) are retried with backoff, honouring
// Retry-After; an AbortSignal cancels the request on the server too. A server error comes back
// as a RemoteError carrying the failing node, for the caller to name the user's source line.
import { RemoteError, errorFrom, errorOf, exchange, saysLater, sleep, type WholeAnswer } from './http.js';
import type { SourceOp } from '../native.js';
import { apiKeyFromEnv } from '../settings.js';
import type { Recorded } from './record.js';
import { decodeResult, encodeRequest, ENVELOPE_CONTENT_TYPE, type DecodedResult, type RequestKind } from './envelope.js';

export interface ClientOptions {
  /** sent as Authorization: Bearer <key>; default TORCHSIGHT_API_KEY */
  apiKey?: string;
  /** no status line on stderr */
  quiet?: boolean;
  /** retries of a 429 or 503 (and of a failed connection for reads) (default 6) */
  retries?: number;
  /** first backoff when no Retry-After is given, ms (default 250; doubles) */
  backoffMs?: number;
  /** where the status line goes (default process.stderr) */
  statusStream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** device decoded tensors are made on (default 'cpu') */
  device?: string;
}

export interface SubmitOptions {
  signal?: AbortSignal;
  /** false: return the job at once (default true) */
  blocking?: boolean;
  quiet?: boolean;
  /** each step's tokens of a generation, as they are made */
  onToken?: (event: { step: number; tokens: number[] }) => void;
  /** each status change */
  onStatus?: (status: JobStatusEvent) => void;
}

export type JobState = 'received' | 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobStatusEvent {
  id: string;
  state: JobState;
  position?: number;
}

export interface RemoteJobStatus extends JobStatusEvent {
  model: string;
  kind: RequestKind;
  received: string;
  started?: string;
  finished?: string;
  steps?: number;
  error?: { status: number; code: string; message: string; node?: number; template?: string };
}

export { RemoteError } from './http.js';

export interface ModelInfo {
  name: string;
  architecture: string;
  device: string;
  dtype: string;
  sites: string[];
  /** the operations of its modules' forwards (`.source`); absent from servers before them */
  ops?: SourceOp[];
  tree: string;
  manifest: Record<string, unknown>;
}

export class RemoteClient {
  readonly url: string;
  readonly #options: ClientOptions;
  readonly #apiKey: string | undefined;

  constructor(url: string, options: ClientOptions = {}) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new Error(`remote: '${url}' is not a URL (expected http://host:port)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`remote: '${url}' must be an http or https URL`);
    this.url = u.href.replace(/\/+$/, '');
    this.#options = options;
    this.#apiKey = options.apiKey ?? apiKeyFromEnv();
  }

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.#apiKey ? { authorization: `Bearer ${this.#apiKey}` } : {}), ...extra };
  }

  /**
   * The retry policy of both transports: a refusal that says "later" (429, 503 without a job's
   * state) waits Retry-After (or backs off, with a little jitter so clients refused together do
   * not come back together) and tries again; a failed send is retried when `mayResend` allows it.
   * `refusal` reads an answer: undefined when it is a success, else its error.
   */
  async #retrying<A>(
    signal: AbortSignal | undefined,
    send: () => Promise<A>,
    mayResend: (e: unknown) => boolean,
    unreachable: (e: unknown) => string,
    refusal: (a: A) => Promise<{ err: RemoteError; later: boolean } | undefined>,
  ): Promise<A> {
    const retries = this.#options.retries ?? 6;
    let backoff = this.#options.backoffMs ?? 250;
    for (let attempt = 0; ; attempt++) {
      let answer: A;
      try {
        answer = await send();
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (!mayResend(e) || attempt >= retries) throw new RemoteError(`remote: cannot reach ${this.url} (${unreachable(e)})`, 0, 'unreachable');
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 10_000);
        continue;
      }
      const refused = await refusal(answer);
      if (!refused) return answer;
      if (refused.later && attempt < retries) {
        const wait = refused.err.retryAfter !== undefined ? refused.err.retryAfter * 1000 : backoff;
        await sleep(wait * (1 + Math.random() * 0.2), signal);
        backoff = Math.min(backoff * 2, 10_000);
        continue;
      }
      throw refused.err;
    }
  }

  /**
   * fetch with retries (#retrying): a failed connection is retried for `idempotent` requests,
   * and for any when it was refused (nothing was sent). Other failures throw RemoteError.
   */
  #fetch(path: string, init: RequestInit & { idempotent?: boolean } = {}): Promise<Response> {
    const signal = init.signal ?? undefined;
    return this.#retrying(
      signal,
      () => fetch(this.url + path, { ...init, headers: this.#headers(init.headers as Record<string, string>) }),
      // a refused connection reached nobody, so even a POST may be sent again
      (e) => !!init.idempotent || ((e as Error).cause as { code?: string } | undefined)?.code === 'ECONNREFUSED',
      (e) => String((e as Error).cause ?? (e as Error).message),
      async (res) => {
        if (res.ok || res.status === 202) return undefined;
        return { err: await errorOf(res), later: saysLater(res.status, res.headers.get('x-torchsight-job-state')) };
      },
    );
  }

  /**
   * A POST whose answer is read whole, over node:http's keep-alive pool rather than fetch (a
   * fraction of its fixed cost per request, which is most of a small request's time on
   * loopback); the same retries as #fetch for a POST: 429 and 503, and a refused connection.
   */
  async #postWhole(path: string, body: Uint8Array, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<Buffer> {
    const res = await this.#retrying<WholeAnswer>(
      signal,
      () => exchange(this.url, 'POST', path, body, this.#headers(headers), signal),
      // a refused connection reached nobody, so the POST may be sent again
      (e) => (e as NodeJS.ErrnoException).code === 'ECONNREFUSED',
      (e) => String(e),
      async (a) => {
        if (a.status >= 200 && a.status < 300) return undefined;
        const retryAfter = a.headers['retry-after'];
        const err = errorFrom(a.status, a.statusText, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, a.bytes.toString('utf8'));
        return { err, later: saysLater(a.status, a.headers['x-torchsight-job-state']) };
      },
    );
    return res.bytes;
  }

  async health(): Promise<{ status: string; models: string[]; queued: number; running: number }> {
    return (await this.#fetch('/v1/health', { idempotent: true })).json() as never;
  }

  async models(): Promise<ModelInfo[]> {
    return ((await (await this.#fetch('/v1/models', { idempotent: true })).json()) as { models: ModelInfo[] }).models;
  }

  async model(name: string): Promise<ModelInfo> {
    return (await this.#fetch(`/v1/models/${encodeURIComponent(name)}`, { idempotent: true })).json() as never;
  }

  /** The model's tokenizer.json, as text. */
  async tokenizer(name: string): Promise<string> {
    return (await this.#fetch(`/v1/models/${encodeURIComponent(name)}/tokenizer.json`, { idempotent: true })).text();
  }

  /**
   * Sends an encoded request (envelope.ts) to model `name` and resolves to its decoded result,
   * or with `{ blocking: false }`, to its job at once.
   */
  async submit(name: string, kind: RequestKind, body: Uint8Array, options: SubmitOptions & { blocking: false }): Promise<RemoteJob>;
  async submit(name: string, kind: RequestKind, body: Uint8Array, options?: SubmitOptions): Promise<DecodedResult>;
  async submit(name: string, kind: RequestKind, body: Uint8Array, options: SubmitOptions = {}): Promise<DecodedResult | RemoteJob> {
    const { signal } = options;
    signal?.throwIfAborted();
    const path = `/v1/models/${encodeURIComponent(name)}/${kind}`;
    const init = { method: 'POST', body, signal, headers: { 'content-type': ENVELOPE_CONTENT_TYPE } as Record<string, string> };
    if (options.blocking === false) {
      const res = await this.#fetch(`${path}?blocking=false`, init);
      const st = (await res.json()) as RemoteJobStatus;
      return new RemoteJob(this, st.id);
    }
    const quiet = options.quiet ?? this.#options.quiet ?? false;
    if (quiet && !options.onToken && !options.onStatus) {
      // nothing to show while it waits: one round trip, the result in the response
      try {
        const bytes = await this.#postWhole(path, body, { ...init.headers, accept: ENVELOPE_CONTENT_TYPE }, signal);
        return await decodeResult(bytes, { device: this.device });
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        throw e;
      }
    }
    // the job's events stream while it waits and runs; the result is fetched when it is done
    const res = await this.#fetch(path, { ...init, headers: { ...init.headers, accept: 'application/x-ndjson' } });
    const id = res.headers.get('x-torchsight-job') ?? '';
    const job = new RemoteJob(this, id);
    const status = new StatusLine(quiet, this.#options.statusStream ?? process.stderr);
    try {
      // the result (or the job's error) is fetched once the events say it finished; when the
      // stream broke first, the same call reattaches and waits for it
      await job.follow(res, options, status);
      return await job.result({ signal });
    } catch (e) {
      if (signal?.aborted) {
        // the server cancels on disconnect; say so explicitly too, in case a proxy keeps the connection
        void this.cancel(id).catch(() => undefined);
        throw signal.reason;
      }
      throw e;
    } finally {
      status.end();
    }
  }

  /** A job by id (another process's too, with the same key), while the server keeps it. */
  job(id: string): RemoteJob {
    return new RemoteJob(this, id);
  }

  async cancel(id: string): Promise<RemoteJobStatus> {
    return (await this.#fetch(`/v1/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' })).json() as never;
  }

  /** @internal */
  request(path: string, init: RequestInit & { idempotent?: boolean } = {}): Promise<Response> {
    return this.#fetch(path, init);
  }

  /** @internal */
  get device(): string {
    return this.#options.device ?? 'cpu';
  }
}

/** A job on the server: its status, its result, its events. */
export class RemoteJob {
  constructor(
    readonly client: RemoteClient,
    readonly id: string,
  ) {}

  async status(): Promise<RemoteJobStatus> {
    return (await this.client.request(`/v1/jobs/${encodeURIComponent(this.id)}`, { idempotent: true })).json() as never;
  }

  /** Waits for the job and returns its decoded result; a failed job throws its RemoteError. */
  async result(options: { signal?: AbortSignal } = {}): Promise<DecodedResult> {
    for (;;) {
      options.signal?.throwIfAborted();
      const res = await this.client.request(`/v1/jobs/${encodeURIComponent(this.id)}/result?wait=20000`, { idempotent: true, signal: options.signal });
      if (res.status === 202) {
        await res.arrayBuffer();
        continue;
      }
      return decodeResult(new Uint8Array(await res.arrayBuffer()), { device: this.client.device });
    }
  }

  async cancel(): Promise<RemoteJobStatus> {
    return this.client.cancel(this.id);
  }

  /**
   * Reads an NDJSON event stream (a submit's response, or /events) until the job finishes;
   * returns its last status, or undefined when the stream ended first.
   */
  async follow(res: Response, options: SubmitOptions, status?: StatusLine): Promise<JobStatusEvent | undefined> {
    if (!res.body) return undefined;
    const decoder = new TextDecoder();
    let buf = '';
    let last: JobStatusEvent | undefined;
    const reader = res.body.getReader();
    try {
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (options.signal?.aborted) throw options.signal.reason;
          return undefined;
        }
        if (chunk.done) return last && ['done', 'failed', 'cancelled'].includes(last.state) ? last : undefined;
        buf += decoder.decode(chunk.value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          const e = JSON.parse(line) as { type: string } & JobStatusEvent & { step: number; tokens: number[] };
          if (e.type === 'token') {
            options.onToken?.({ step: e.step, tokens: e.tokens });
            status?.token(e.id, e.step);
          } else if (e.type === 'status') {
            last = { id: e.id, state: e.state, ...(e.position !== undefined ? { position: e.position } : {}) };
            options.onStatus?.(last);
            status?.show(last);
          }
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  /** Follows the job's events from now on (past tokens first). */
  async events(options: SubmitOptions = {}): Promise<JobStatusEvent | undefined> {
    const res = await this.client.request(`/v1/jobs/${encodeURIComponent(this.id)}/events`, { idempotent: true, signal: options.signal });
    return this.follow(res, options);
  }
}

/** The job's state on stderr, one line rewritten in place on a terminal, a line per change otherwise. */
class StatusLine {
  #last = '';
  #drawn = false;
  constructor(
    readonly quiet: boolean,
    readonly out: NodeJS.WritableStream & { isTTY?: boolean },
  ) {}

  show(s: JobStatusEvent): void {
    this.#draw(`job ${s.id}: ${s.state}${s.state === 'queued' && s.position ? ` (position ${s.position})` : ''}`);
  }

  token(id: string, step: number): void {
    if (this.out.isTTY) this.#draw(`job ${id}: running, ${step + 1} token${step ? 's' : ''}`);
  }

  #draw(line: string): void {
    if (this.quiet || line === this.#last) return;
    this.#last = line;
    if (this.out.isTTY) {
      this.out.write(`\r\x1b[K${line}`);
      this.#drawn = true;
    } else this.out.write(`${line}\n`);
  }

  end(): void {
    if (this.#drawn) this.out.write('\n');
    this.#drawn = false;
  }
}

/**
 * Encodes a recorded request (record.ts), runs it on model `name`, and resolves to the user's
 * value; a server error naming a node becomes the error a local trace gives (the user's source
 * line in its message), with the server's `status` and `code` on it.
 */
export async function sendRecorded<R>(client: RemoteClient, name: string, rec: Recorded<R>, options: SubmitOptions = {}): Promise<R> {
  const body = await encodeRequest(rec.request);
  let result: DecodedResult;
  try {
    result = await client.submit(name, rec.request.kind, body, { ...options, blocking: true });
  } catch (e) {
    if (e instanceof RemoteError && e.template) throw new RemoteError(rec.explain(e.template), e.status, e.code, e.node, e.template);
    throw e;
  }
  return rec.resolve(result);
}

/** Encodes a recorded request and queues it on model `name` without waiting: its job. */
export async function submitRecorded<R>(client: RemoteClient, name: string, rec: Recorded<R>, options: SubmitOptions = {}): Promise<RemoteJob> {
  return client.submit(name, rec.request.kind, await encodeRequest(rec.request), { ...options, blocking: false });
}
