// What a loaded model's traces, sessions, generations and warm-up share: the native model, its
// module tree and envoys, and the request queue every native request goes through. The public
// LanguageModel (model.ts) is a thin shell over one of these.
import { buildTree, type Manifest, type ModuleNode } from './manifest.js';
import { cancelFlag, type NativeModel, type RunResult } from './native.js';
import { RequestQueue } from './queue.js';
import type { Tensor } from './tensor.js';
import type { Tokenizer } from './tokenizer.js';
import type { TraceInput } from './inputs.js';
import { envoyOf, type Envoy, type Scope } from './trace/envoy.js';
import { Graph } from './trace/graph.js';
import { markSaved, resolveSaved, substitute } from './trace/proxy.js';
import { recordTrace, type RecordingHost, type Tracer } from './trace/tracer.js';
import { recordSession, type Session } from './trace/session.js';
import { generate, type GenerateOptions, type GenerationScope } from './generate.js';
import type { EnvoyOf } from './trace/types.js';
import { siteIdsOf } from './trace/wire.js';
import type { SourceOp } from './native.js';

export interface TraceOptions extends RemoteOptions {
  /** Cancels the trace: queued work never starts; a running forward stops at the next module. */
  signal?: AbortSignal;
  /** @internal records every hook site that fired, in order (for tests and `inspect`) */
  recordSites?: boolean;
  /** @internal returns the last forward's logits as raw.logits (forwardRaw) */
  returnLogits?: boolean;
}

export type { Resolved } from './trace/types.js';

/** A trace's returned value once its results are in: proxies replaced by their values. */
export function valueOf(graph: Graph, result: unknown, raw: { saved: unknown[] }): unknown {
  resolveSaved(graph, raw.saved);
  return substitute(result);
}

/** `f()`, with a synchronous throw turned into a rejection (for entries that are not async functions). */
export function rejecting<T>(f: () => Promise<T>): Promise<T> {
  try {
    return f();
  } catch (e) {
    return Promise.reject(e);
  }
}

/** What a model's requests go through: the local native queue (ModelRuntime) or a server (remote/backend.ts). */
export interface ModelBackend extends ModelRecorder {
  /** model.trace: records `fn` now and runs it */
  trace<T, R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn: ((m: EnvoyOf<T>, tracer: Tracer<T>) => R) | undefined, options: TraceOptions): Promise<unknown>;
  /** model.session */
  session<T, R>(fn: (s: Session<T>) => R, options: TraceOptions): Promise<unknown>;
  /** model.generate */
  generate<T, R extends object | void>(input: TraceInput, options: GenerateOptions & RemoteOptions, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R): Promise<unknown>;
  dispose(): Promise<void>;
}

/**
 * How a request goes to a server (section 9 of the API): on a remote model the `blocking` and
 * `quiet` options apply; on a local model `remote` sends that one request to a server.
 */
export interface RemoteOptions {
  /**
   * On a local model: the server (http://host:port) to run this request on instead. The server
   * must serve the same export under `model` (default: the local folder's name, which is what
   * `torchsight serve <dir>` names it).
   */
  remote?: string;
  /** the server's name of the model, with `remote` (default: the local folder's name) */
  model?: string;
  /** with `remote`: the API key (default TORCHSIGHT_API_KEY) */
  apiKey?: string;
  /** no status line on stderr while the request waits and runs */
  quiet?: boolean;
  /** false: resolve at once to the request's job (`job.id`, `job.status()`, `job.result()`) */
  blocking?: boolean;
}

/**
 * The recording half of a model, local or remote: its module tree and envoys, and the site
 * ids its graphs name sites by (the native model's, or a server's).
 */
export class ModelRecorder implements RecordingHost {
  readonly tree: { root: ModuleNode; byPath: Map<string, ModuleNode> };
  #scope: Scope | undefined;

  constructor(
    readonly dir: string,
    readonly manifest: Manifest,
    readonly tokenizer: Tokenizer,
    /** site name -> id as the model that runs the graphs numbers them (read at the first recording) */
    readonly siteTable: () => ReadonlyMap<string, number>,
    /** the operations of every module's forward (`.source`), read when a trace first asks */
    readonly opTable?: () => readonly SourceOp[],
  ) {
    this.tree = buildTree(manifest);
  }

  get padId(): number {
    const s = this.manifest.specialTokens ?? { pad: null, eos: null, bos: null };
    return s.pad ?? s.eos ?? 0;
  }

  /** The model's positions (n_positions or max_position_embeddings), 0 when the config has neither. */
  get maxPositions(): number {
    const cfg = (this.manifest.config ?? {}) as Record<string, unknown>;
    return Number(cfg.n_positions ?? cfg.max_position_embeddings ?? 0) || 0;
  }

  recording<R>(graph: Graph, invoke: number, fn: (m: Envoy) => R): R {
    const scope = (this.#scope ??= { graph: undefined, invoke: 0, manifest: this.manifest, byPath: this.tree.byPath, envoys: new Map(), siteIds: this.siteTable(), ops: this.opTable });
    const prev = { graph: scope.graph, invoke: scope.invoke };
    scope.graph = graph;
    scope.invoke = invoke;
    try {
      return fn(envoyOf(scope, this.tree.root));
    } finally {
      scope.graph = prev.graph;
      scope.invoke = prev.invoke;
    }
  }

  /** Records one trace into `graph`. */
  recordTrace<T, R>(graph: Graph, input: TraceInput | ((tracer: Tracer<T>) => R), fn?: (m: EnvoyOf<T>, tracer: Tracer<T>) => R): R {
    return recordTrace<T, R>(this, graph, input, fn);
  }

  /** Records one trace into a new graph, which replays `record` when an error needs a source line. */
  recordNew<R>(record: (graph: Graph) => R): { graph: Graph; result: R } {
    const graph = new Graph(this.padId);
    const result = record(graph);
    graph.replayWith(() => {
      const g = new Graph(this.padId, true);
      record(g);
      return g;
    });
    return { graph, result };
  }
}

/** A model loaded here: requests run on its native model, one at a time through its queue. */
export class ModelRuntime extends ModelRecorder implements ModelBackend {
  readonly queue = new RequestQueue();
  #native: NativeModel | undefined;

  constructor(dir: string, manifest: Manifest, tokenizer: Tokenizer, nativeModel: NativeModel) {
    let ops: readonly SourceOp[] | undefined;
    super(dir, manifest, tokenizer, () => siteIdsOf(this.native), () => (ops ??= this.native.ops()));
    this.#native = nativeModel;
  }

  get native(): NativeModel {
    if (!this.#native) throw new Error('this model was disposed');
    return this.#native;
  }

  trace<T, R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn: ((m: EnvoyOf<T>, tracer: Tracer<T>) => R) | undefined, options: TraceOptions): Promise<unknown> {
    const { graph, result } = this.recordNew((g) => this.recordTrace<T, R>(g, input, fn));
    return this.sendGraph(graph, result, options, (raw) => valueOf(graph, result, raw));
  }

  session<T, R>(fn: (s: Session<T>) => R, options: TraceOptions): Promise<unknown> {
    const { graph, result } = recordSession<T, R>(this, this.padId, fn);
    return this.sendGraph(graph, result, options, (raw) => valueOf(graph, result, raw));
  }

  generate<T, R extends object | void>(input: TraceInput, options: GenerateOptions, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R): Promise<unknown> {
    return generate<T, R>(this, input, options, fn);
  }

  /**
   * Sends a recorded graph through the queue (packed when it starts, after any queued request,
   * into the shared transient buffer) and gives the native result to `then`.
   */
  sendGraph<U>(graph: Graph, result: unknown, options: TraceOptions, then: (raw: RunResult) => U): Promise<U> {
    const { signal, recordSites, returnLogits } = options;
    signal?.throwIfAborted();
    markSaved(result);
    graph.seal();
    // the native side polls this flag at every hook site
    const cancel = signal ? cancelFlag() : undefined;
    const nm = this.native;
    const start = () => {
      const request: Parameters<NativeModel['run']>[0] = graph.request(nm, true);
      request.recordSites = !!recordSites;
      request.returnLogits = !!returnLogits;
      request.cancel = cancel;
      return nm.run(request);
    };
    return this.queue.run({ signal, cancel, explain: (m) => graph.explain(m) }, start, then);
  }

  /** Sends a recorded graph and maps the results back: fn's value, and the native result. */
  submit(graph: Graph, result: unknown, options: TraceOptions): Promise<{ value: unknown; raw: RunResult }> {
    return rejecting(() => this.sendGraph(graph, result, options, (raw) => ({ value: valueOf(graph, result, raw), raw })));
  }

  /** Frees the native model once the queued requests are done; later use throws. */
  async dispose(): Promise<void> {
    const nm = this.#native;
    if (!nm) return;
    this.#native = undefined;
    await this.queue.idle();
    nm.dispose();
  }
}
