// The remote backend of a LanguageModel (section 9): the same recording as a local model (the
// module tree and tokenizer come from the server, the site ids are the server's), but each
// request is packed into an envelope and sent to `torchsight serve` instead of the native queue.
// A model picks its backend once (LanguageModel.load: local; LanguageModel.remote: this), so
// model.ts stays a thin shell and the local path is untouched.
import { applyRename, type Rename } from '../trace/rename.js';
import { ModelRecorder, type ModelBackend, type Resolved, type TraceOptions } from '../runtime.js';
import type { Manifest } from '../manifest.js';
import { Tokenizer } from '../tokenizer.js';
import type { TraceInput } from '../inputs.js';
import { fromNative } from '../tensor.js';
import { cutAtStop, type GenerateOptions, type GenerateOutput, type GenerationScope } from '../generate.js';
import type { Session } from '../trace/session.js';
import type { Tracer } from '../trace/tracer.js';
import type { EnvoyOf } from '../trace/types.js';
import { apiKeyFromEnv } from '../settings.js';
import { RemoteClient, RemoteError, sendRecorded, submitRecorded, type ModelInfo, type RemoteJob, type RemoteJobStatus, type SubmitOptions } from './client.js';
import { recordGenerateRequest, recordSessionRequest, recordTraceRequest, type Recorded } from './record.js';
import type { DecodedResult } from './envelope.js';

export interface RemoteModelOptions {
  /** sent as `Authorization: Bearer <key>`; default TORCHSIGHT_API_KEY */
  apiKey?: string;
  /** no status line on stderr while requests wait and run */
  quiet?: boolean;
  /** retries of a 429 or 503 (default 6), honouring Retry-After */
  retries?: number;
  /** first backoff when a refusal gives no Retry-After, ms (default 250; doubles) */
  backoffMs?: number;
  /** where the status line goes (default process.stderr) */
  statusStream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** aliases for module paths, as LanguageModel.load's `rename` (trace/rename.ts) */
  rename?: Rename;
}

/**
 * A request sent with `{ blocking: false }`: its id at once, its state and its result later.
 * `model.job(id)` makes one for a job sent by another process (see RemoteBackend.job).
 */
export class Job<R = unknown> {
  readonly #job: RemoteJob;
  readonly #resolve: (res: DecodedResult) => R;
  readonly #explain: (message: string) => string;

  /** @internal */
  constructor(job: RemoteJob, resolve: (res: DecodedResult) => R, explain: (message: string) => string = (m) => m) {
    this.#job = job;
    this.#resolve = resolve;
    this.#explain = explain;
  }

  /** The server's id of the job: give it to `model.job(id)` to reattach from elsewhere. */
  get id(): string {
    return this.#job.id;
  }

  /** received, queued (with its position), running, done, failed or cancelled. */
  status(): Promise<RemoteJobStatus> {
    return this.#job.status();
  }

  /** Waits for the job; resolves as the blocking call would have, or throws its error naming the user's line. */
  async result(options: { signal?: AbortSignal } = {}): Promise<R> {
    try {
      return this.#resolve(await this.#job.result(options));
    } catch (e) {
      throw explained(e, this.#explain);
    }
  }

  /** Cancels the job on the server. */
  async cancel(): Promise<RemoteJobStatus> {
    return this.#job.cancel();
  }
}

/**
 * What a reattached job resolves to: it was recorded in another process, so there is no
 * callback value to fill in; the saved values come by node id (in the order they were
 * recorded), with a generation's tokens.
 */
export interface JobValues {
  /** saved node id -> its value (Tensors, numbers, lists) */
  saved: Map<number, unknown>;
  /** a generation's tokens, a row each */
  tokens?: number[][];
  steps?: number;
}

/** A server error that names a node becomes the error a local trace gives: the user's line. */
function explained(e: unknown, explain: (message: string) => string): unknown {
  if (e instanceof RemoteError && e.template) return new RemoteError(explain(e.template), e.status, e.code, e.node, e.template);
  return e;
}

export class RemoteBackend extends ModelRecorder implements ModelBackend {
  readonly client: RemoteClient;
  /** the model's name on the server */
  readonly name: string;
  readonly info: ModelInfo;

  constructor(client: RemoteClient, name: string, info: ModelInfo, tokenizer: Tokenizer, manifest: Manifest = info.manifest as unknown as Manifest) {
    const sites = new Map(info.sites.map((s, i) => [s, i] as const));
    super(`${client.url}/v1/models/${name}`, manifest, tokenizer, () => sites, () => info.ops ?? []);
    this.client = client;
    this.name = name;
    this.info = info;
  }

  /** Connects to model `name` on the server at `url`: its manifest, module tree, sites and tokenizer. */
  static async connect(url: string, name: string, options: RemoteModelOptions = {}): Promise<RemoteBackend> {
    if (typeof name !== 'string' || name === '') throw new Error('LanguageModel.remote(url, name): name must be the model name the server lists');
    const client = new RemoteClient(url, { ...options, apiKey: options.apiKey ?? apiKeyFromEnv() });
    const [info, tokJson] = await Promise.all([client.model(name), client.tokenizer(name)]);
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(JSON.parse(tokJson) as object);
    } catch (e) {
      throw new Error(`${client.url}: the tokenizer of '${name}' is not usable (${(e as Error).message})`);
    }
    const backend = new RemoteBackend(client, name, info, tokenizer);
    applyRename(backend.tree, options.rename);
    return backend;
  }

  trace<T, R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn: ((m: EnvoyOf<T>, tracer: Tracer<T>) => R) | undefined, options: TraceOptions): Promise<unknown> {
    options.signal?.throwIfAborted();
    return this.#send(recordTraceRequest<T, R>(this, input, fn), options);
  }

  session<T, R>(fn: (s: Session<T>) => R, options: TraceOptions): Promise<unknown> {
    options.signal?.throwIfAborted();
    return this.#send(recordSessionRequest<T, R>(this, fn), options);
  }

  generate<T, R extends object | void>(input: TraceInput, options: GenerateOptions & TraceOptions, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R): Promise<unknown> {
    options.signal?.throwIfAborted();
    const rec = recordGenerateRequest<T, R>(this, input, options, fn);
    const single = typeof input === 'string' || (Array.isArray(input) && input.every((x) => typeof x === 'number'));
    const maxNewTokens = rec.request.generate!.maxNewTokens;
    // each row's text so far, for onToken, as a local generation gives it
    const sofar: number[][] = rec.request.traces[0].ids.length ? Array.from({ length: rec.request.traces[0].batch }, () => []) : [];
    const onToken =
      options.onToken || options.onProgress
        ? (e: { step: number; tokens: number[] }) => {
            e.tokens.forEach((t, b) => t >= 0 && sofar[b]?.push(t));
            options.onToken?.({ step: e.step, tokens: e.tokens, text: sofar.map((r) => this.tokenizer.decode(r)) });
            options.onProgress?.({ step: e.step + 1, maxNewTokens, fraction: Math.min(1, (e.step + 1) / maxNewTokens) });
          }
        : undefined;
    const shaped: Recorded<GenerateOutput<R>> = {
      request: rec.request,
      explain: rec.explain,
      resolve: (res) => {
        const r = rec.resolve(res);
        const tokens = r.tokens.map((row) => cutAtStop(this, row, rec.stopStrings));
        const text = tokens.map((row) => this.tokenizer.decode(row));
        return { ...((r.value ?? {}) as object), tokens: single ? tokens[0] : tokens, text: single ? text[0] : text, steps: r.steps, usedCache: r.usedCache } as GenerateOutput<R>;
      },
    };
    return this.#send(shaped, options, onToken);
  }

  /** A job by id, sent by this or another process with the same key, while the server keeps it. */
  job(id: string): Job<JobValues> {
    if (typeof id !== 'string' || id === '') throw new Error('model.job(id): id must be a job id (job.id)');
    return new Job(this.client.job(id), (res) => {
      const saved = new Map<number, unknown>();
      for (let i = 0; i + 1 < res.saved.length; i += 2) saved.set(res.saved[i] as number, fromNative(res.saved[i + 1]));
      return { saved, ...(res.generate ? { tokens: res.generate.tokens, steps: res.generate.steps } : {}) };
    });
  }

  async #send<R>(rec: Recorded<R>, options: TraceOptions, onToken?: SubmitOptions['onToken']): Promise<R | Job<R>> {
    const submit: SubmitOptions = { signal: options.signal, ...(options.quiet !== undefined ? { quiet: options.quiet } : {}), ...(onToken ? { onToken } : {}) };
    if (options.blocking === false) return new Job(await submitRecorded(this.client, this.name, rec, submit), (res) => rec.resolve(res), rec.explain);
    return sendRecorded(this.client, this.name, rec, submit);
  }

  async dispose(): Promise<void> {
    // nothing is held here; the server keeps the weights
  }
}
