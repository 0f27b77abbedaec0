// LanguageModel: loads a model folder and runs traces, sessions and generations on it. A thin
// shell: recording and sending live in runtime.ts (with the request queue, queue.ts), the
// tracer and session contexts in trace/tracer.ts and trace/session.ts, generation in
// generate.ts, the warm-up in warmup.ts.
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { native, type NativeModel, type ApplyRule } from './native.js';
import { readManifest, type Manifest } from './manifest.js';
import { Tokenizer } from './tokenizer.js';
import type { TraceInput } from './inputs.js';
import { checkNativeSwitches } from './settings.js';
import type { Envoy } from './trace/envoy.js';
import type { Graph } from './trace/graph.js';
import type { EnvoyOf } from './trace/types.js';
import type { Session } from './trace/session.js';
import type { Tracer } from './trace/tracer.js';
import { Tensor } from './tensor.js';
import { ModelRuntime, rejecting, type ModelBackend, type RemoteOptions, type Resolved, type TraceOptions } from './runtime.js';
import { stream, type GenerateOptions, type GenerateOutput, type GenerationScope } from './generate.js';
import { Job, RemoteBackend, type JobValues, type RemoteModelOptions } from './remote/backend.js';
import { warmForwards } from './warmup.js';
import { applyRename, aliasPaths, formatAliased, type Rename } from './trace/rename.js';
import { buildTree } from './manifest.js';
import { checkEdit, editGenerate, editSession, editTrace, SharedBackend, type EditFn, type EditOptions } from './edit.js';
import { scan, type Scanned, type ScanOptions } from './scan.js';

export { Tracer } from './trace/tracer.js';
export { Session } from './trace/session.js';
export type { Resolved, TraceOptions, RemoteOptions } from './runtime.js';
export type { GenerateResult } from './generate.js';
export { Job, type JobValues, type RemoteModelOptions } from './remote/backend.js';
export type { Scanned, ScannedTensor, ScanOptions } from './scan.js';

export interface LoadOptions {
  /** 'cpu' | 'cuda' | 'cuda:N'; default 'cuda' when available, else 'cpu' */
  device?: string;
  /** 'float32' | 'float16' | 'bfloat16'; default as exported */
  dtype?: 'float32' | 'float16' | 'bfloat16';
  /** Called as loading goes: the weights are counted in bytes read from disk. */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * Runs the forward (and a short generation, when the export has a key/value-cache graph) a few
   * times before load resolves, so the first trace is as fast as the rest (default true). On
   * CUDA TorchScript's profiling executor optimizes each graph at its first runs (without warm-up
   * the first two traces and the first generation each take hundreds of milliseconds more); on
   * the CPU the graphs are compiled at load and the warm-up runs the forward's first allocations.
   */
  warmup?: boolean;
  /**
   * Aliases for module paths, nnsight's `rename`: `{ 'transformer.h': 'layers', mlp: 'ffn' }`
   * makes `m.layers[3].ffn` the module `transformer.h.3.mlp` (the original paths keep working).
   * A module path is mounted at the root (or at a dotted alias's parent); a plain name that is no
   * root child renames that child module wherever it occurs.
   */
  rename?: Rename;
}

export interface LoadProgress {
  /**
   * 'tokenizer'; 'weights' (model.pt, `done`/`total` in bytes); 'convert' (to the requested dtype);
   * 'step' (step.pt, the key/value-cache graph, in bytes); 'warmup' (`done`/`total` in warm-up
   * runs: forwards and short generations); 'ready' (last, once).
   */
  phase: 'tokenizer' | 'weights' | 'convert' | 'step' | 'warmup' | 'ready';
  done: number;
  total: number;
  /** The whole load so far, 0 to 1 (bytes of both files; warm-up runs at 1). */
  fraction: number;
}

/**
 * A loaded model. `T` describes its module tree (the exporter's model.d.ts) and types the envoys
 * of trace callbacks: `LanguageModel.load<GPT2LMHeadModel>(dir)`. Without it envoys are `any`.
 */
export class LanguageModel<T = unknown> {
  readonly dir: string;
  readonly manifest: Manifest;
  readonly tokenizer: Tokenizer;
  /** where requests go: the native queue here, or a server (chosen once, at load or remote) */
  readonly #rt: ModelBackend;
  /** the same backend when it is local (native-only entries need it) */
  readonly #local: ModelRuntime | undefined;
  /** servers this local model sent `{ remote }` requests to */
  readonly #remotes = new Map<string, Promise<RemoteBackend>>();
  /** the weights this handle shares with its edited copies (model.edit) */
  readonly #shared: SharedBackend;
  /** this handle's edits, recorded first in each of its requests */
  #edits: readonly EditFn<T>[];
  #rename: Rename | undefined;
  #disposed = false;

  private constructor(rt: ModelBackend, shared?: SharedBackend, edits: readonly EditFn<T>[] = [], rename?: Rename) {
    this.#rt = rt;
    this.#shared = shared ?? new SharedBackend(rt);
    this.#edits = edits;
    this.#rename = rename;
    this.#local = rt instanceof ModelRuntime ? rt : undefined;
    this.dir = rt.dir;
    this.manifest = rt.manifest;
    this.tokenizer = rt.tokenizer;
  }

  /**
   * A model served by `torchsight serve` at `url` under `name` (as `GET /v1/models` lists it).
   * Its manifest, module tree and tokenizer come from the server, so the typed tree,
   * `modulePaths()`, `String(model)` and `model.tokenizer` work with no weights here; `trace`,
   * `session` and `generate` run on the server and give the same numbers as locally.
   */
  static async remote<T = unknown>(url: string, name: string, options: RemoteModelOptions = {}): Promise<LanguageModel<T>> {
    return new LanguageModel<T>(await RemoteBackend.connect(url, name, options), undefined, [], options.rename);
  }

  /** Loads a model folder written by the exporter (model.pt, tokenizer.json, torchsight.json). */
  static async load<T = unknown>(dir: string, options: LoadOptions = {}): Promise<LanguageModel<T>> {
    if (typeof dir !== 'string') throw new Error('LanguageModel.load(dir): dir must be a string');
    const path = resolve(dir);
    if (!existsSync(path) || !statSync(path).isDirectory()) throw new Error(`${path}: no such model folder`);
    const manifest = readManifest(path);
    const modelFile = join(path, 'model.pt');
    if (!existsSync(modelFile)) throw new Error(`${modelFile}: not found`);
    applyRename(buildTree(manifest), options.rename); // a bad rename fails before the weights load
    const tokFile = join(path, 'tokenizer.json');
    if (!existsSync(tokFile)) throw new Error(`${tokFile}: not found`);
    const onProgress = options.onProgress;
    if (onProgress !== undefined && typeof onProgress !== 'function') throw new Error('LanguageModel.load: onProgress must be a function');
    onProgress?.({ phase: 'tokenizer', done: 0, total: 1, fraction: 0 });
    const tokenizer = Tokenizer.fromFile(tokFile);
    const addon = native();
    checkNativeSwitches(); // the addon reads the executor and site-graph switches as a model loads
    const device = options.device ?? (addon.info().cudaAvailable ? 'cuda' : 'cpu');
    if (options.dtype !== undefined && !['float32', 'float16', 'bfloat16'].includes(options.dtype))
      throw new Error(`dtype must be 'float32', 'float16' or 'bfloat16', got '${String(options.dtype)}'`);
    const stepFile = manifest.step ? join(path, manifest.step.file) : '';
    if (stepFile && !existsSync(stepFile)) throw new Error(`${stepFile}: not found (torchsight.json names it as the key/value-cache graph)`);
    // Bytes of model.pt and step.pt make the overall fraction; events after the load are dropped.
    const sizes = { weights: statSync(modelFile).size, step: stepFile ? statSync(stepFile).size : 0 };
    let loading = true;
    // An exception thrown by the user's callback on a native event has nowhere to go (N-API would
    // drop it): keep the first one and reject the load with it.
    let callbackError: { error: unknown } | undefined;
    const report = onProgress
      ? (phase: string, done: number, total: number) => {
          if (!loading || callbackError) return;
          const bytes = phase === 'weights' ? done : phase === 'step' ? sizes.weights + done : sizes.weights;
          try {
            onProgress({ phase: phase as LoadProgress['phase'], done, total, fraction: Math.min(1, bytes / (sizes.weights + sizes.step || 1)) });
          } catch (error) {
            callbackError = { error };
          }
        }
      : undefined;
    const nm = await addon.loadModel(modelFile, device, options.dtype ?? '', stepFile, report).finally(() => (loading = false));
    if (callbackError) {
      nm.dispose();
      throw callbackError.error;
    }
    const apply: Record<string, ApplyRule> = {};
    for (const m of manifest.modules) if (m.apply && m.apply.kind !== 'none') apply[m.path] = { kind: m.apply.kind, eps: m.apply.eps, fn: m.apply.fn };
    const rt = new ModelRuntime(path, manifest, tokenizer, nm);
    applyRename(rt.tree, options.rename);
    nm.configure({ vocabSize: manifest.vocabSize, maxPositions: rt.maxPositions || undefined, apply, cache: manifest.step?.cache });
    try {
      if (options.warmup ?? true) await warmForwards(rt, onProgress && ((done, total) => onProgress({ phase: 'warmup', done, total, fraction: 1 })));
      onProgress?.({ phase: 'ready', done: 1, total: 1, fraction: 1 });
    } catch (e) {
      nm.dispose();
      throw e;
    }
    return new LanguageModel<T>(rt, undefined, [], options.rename);
  }

  get device(): string {
    return this.native.device;
  }
  get dtype(): string {
    return this.native.dtype;
  }
  get config(): Record<string, unknown> | null {
    return this.manifest.config;
  }

  /** @internal */
  get native(): NativeModel {
    return this.#localRuntime().native;
  }

  /** @internal the backend requests go through (it also records them) */
  get backend(): ModelBackend {
    return this.#rt;
  }

  #localRuntime(): ModelRuntime {
    if (!this.#local) throw new Error('this is a remote model: it has no native model here');
    return this.#local;
  }

  get padId(): number {
    return this.#rt.padId;
  }

  /** Every module path, as named_modules() gives them (the root excluded), then the paths `rename`'s aliases add. */
  modulePaths(): string[] {
    return [...this.manifest.modules.map((m) => m.path).filter((p) => p !== ''), ...aliasPaths(this.#rt.tree.root)];
  }

  /** The module tree, one module a line, like PyTorch's repr (an alias as `(layers): -> transformer.h`). */
  toString(): string {
    return formatAliased(this.#rt.tree.root);
  }

  /**
   * A handle on the same weights (no reload, no copy) on which `fn`'s interventions apply to
   * every later trace, session and generation (at every step), recorded before the request's
   * own. `{ inplace: true }` edits this handle instead. The weights are freed when the last
   * handle sharing them is disposed.
   */
  edit(fn: EditFn<T>, options: EditOptions = {}): LanguageModel<T> {
    this.#live();
    checkEdit(this.#rt, fn);
    if (options.inplace) {
      this.#edits = [...this.#edits, fn];
      return this;
    }
    this.#shared.retain();
    return new LanguageModel<T>(this.#rt, this.#shared, [...this.#edits, fn], this.#rename);
  }

  /** Removes this handle's edits (other handles keep theirs). */
  clearEdits(): void {
    this.#edits = [];
  }

  #live(): void {
    if (this.#disposed) throw new Error('this model handle was disposed');
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal runs `fn` with the root envoy recording into `graph`'s invoke `invoke` */
  recording<R>(graph: Graph, invoke: number, fn: (m: Envoy) => R): R {
    return this.#rt.recording(graph, invoke, fn);
  }

  /**
   * One forward pass with interventions. `fn` runs now and records; the graph runs natively
   * inside the forward. Resolves to fn's return value with proxies replaced by Tensors.
   * Also `trace((tracer) => { tracer.invoke(a, fn); tracer.invoke(b, fn2) })` for several invokes.
   */
  trace<R>(input: TraceInput, fn: (m: EnvoyOf<T>, tracer: Tracer<T>) => R, options: TraceOptions & { blocking: false }): Promise<Job<Resolved<R>>>;
  trace<R>(input: (tracer: Tracer<T>) => R, options: TraceOptions & { blocking: false }): Promise<Job<Resolved<R>>>;
  trace<R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn?: ((m: EnvoyOf<T>, tracer: Tracer<T>) => R) | TraceOptions, options?: TraceOptions): Promise<Resolved<R>>;
  trace<R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn?: ((m: EnvoyOf<T>, tracer: Tracer<T>) => R) | TraceOptions, options: TraceOptions = {}): Promise<unknown> {
    // not an async function: the one await is in the queue (each level of async costs a
    // microtask hop), so a throw while recording becomes a rejection here
    return rejecting(() => {
      if (typeof input === 'function' && fn && typeof fn === 'object') options = fn;
      let f = typeof fn === 'function' ? fn : undefined;
      this.#live();
      if (this.#edits.length) [input, f] = [editTrace<T, R>(this.#edits, input, f), undefined];
      if (options.remote !== undefined) return this.#remoteFor(options).then((b) => b.trace<T, R>(input, f, options));
      return this.#rt.trace<T, R>(input, f, options);
    });
  }

  /**
   * Runs `fn`'s graph for shapes and dtypes only (nnsight's `scan`): resolves to fn's return
   * value with `{ shape, dtype }` in place of each tensor, and throws the errors a trace would,
   * at the same lines, without running the weights (they are meta tensors for it). Also
   * `scan((tracer) => ...)` for several invokes. Not for generation; local models only.
   */
  scan<R>(input: TraceInput, fn: (m: EnvoyOf<T>, tracer: Tracer<T>) => R, options?: ScanOptions): Promise<Scanned<R>>;
  scan<R>(input: (tracer: Tracer<T>) => R, options?: ScanOptions): Promise<Scanned<R>>;
  scan<R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn?: ((m: EnvoyOf<T>, tracer: Tracer<T>) => R) | ScanOptions, options: ScanOptions = {}): Promise<Scanned<R>> {
    return rejecting(() => {
      if (typeof input === 'function' && fn && typeof fn === 'object') options = fn;
      let f = typeof fn === 'function' ? fn : undefined;
      this.#live();
      if (this.#edits.length) [input, f] = [editTrace<T, R>(this.#edits, input, f), undefined];
      return scan<T, R>(this.#rt, input, f, options);
    });
  }

  /** Several traces as one request: proxies flow from one trace to the next natively. */
  session<R>(fn: (s: Session<T>) => R, options: TraceOptions & { blocking: false }): Promise<Job<Resolved<R>>>;
  session<R>(fn: (s: Session<T>) => R, options?: TraceOptions): Promise<Resolved<R>>;
  session<R>(fn: (s: Session<T>) => R, options: TraceOptions = {}): Promise<unknown> {
    return rejecting(() => {
      this.#live();
      if (this.#edits.length) fn = editSession<T, R>(this.#edits, fn);
      if (options.remote !== undefined) return this.#remoteFor(options).then((b) => b.session<T, R>(fn, options));
      return this.#rt.session<T, R>(fn, options);
    });
  }

  /**
   * A job sent with `{ blocking: false }`, by id (from this or another process, with the same
   * key), while the server keeps it (`--result-ttl`). Recorded elsewhere, its result has no
   * callback value to fill in: it resolves to the saved values by node id (JobValues).
   */
  job(id: string): Job<JobValues> {
    if (!(this.#rt instanceof RemoteBackend)) throw new Error('model.job(id): jobs are on a server; this model is local (use LanguageModel.remote)');
    return this.#rt.job(id);
  }

  /**
   * The server a local model sends a `{ remote: url }` request to: model `options.model`
   * there, by default this folder's name (what `torchsight serve <dir>` calls it). Connected
   * once per server, model and key; the server's export must be this one.
   */
  #remoteFor(options: TraceOptions): Promise<RemoteBackend> {
    const name = options.model ?? basename(this.dir);
    const key = `${options.remote}\u0000${name}\u0000${options.apiKey ?? ''}`;
    let b = this.#remotes.get(key);
    if (!b) {
      b = RemoteBackend.connect(options.remote!, name, { apiKey: options.apiKey, quiet: options.quiet, rename: this.#rename }).then((r) => {
        const m = r.manifest;
        if (m.architecture !== this.manifest.architecture || m.vocabSize !== this.manifest.vocabSize || m.sites.length !== this.manifest.sites.length)
          throw new Error(`${options.remote}: the server's model '${name}' is a ${m.architecture} with ${m.sites.length} hook sites, not this ${this.manifest.architecture} export (name the served copy with { model })`);
        return r;
      });
      b.catch(() => this.#remotes.delete(key));
      this.#remotes.set(key, b);
    }
    return b;
  }

  /** @internal records one trace into `graph` */
  recordTrace<R>(graph: Graph, input: TraceInput | ((tracer: Tracer<T>) => R), fn?: (m: EnvoyOf<T>, tracer: Tracer<T>) => R): R {
    return this.#rt.recordTrace<T, R>(graph, input, fn);
  }

  /** @internal sends a recorded graph through the queue and maps the results back */
  submit(graph: Graph, result: unknown, options: TraceOptions): ReturnType<ModelRuntime['submit']> {
    return this.#localRuntime().submit(graph, result, options);
  }

  /**
   * Generates up to `maxNewTokens` tokens, greedy unless `temperature` > 0. `fn(m, gen)`
   * records interventions: its body applies at step 0 (the prompt), `gen.all(fn)` at every
   * step, `gen.iter([a, b], fn)` at steps a..b-1. Resolves to `{ tokens, text }` plus fn's
   * return value with proxies replaced (values saved over several steps are arrays).
   */
  generate<R extends object | void = void>(
    input: TraceInput,
    options: GenerateOptions & RemoteOptions & { blocking: false },
    fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R,
  ): Promise<Job<GenerateOutput<R>>>;
  generate<R extends object | void = void>(input: TraceInput, options?: GenerateOptions & RemoteOptions, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R): Promise<GenerateOutput<R>>;
  generate<R extends object | void = void>(input: TraceInput, options: GenerateOptions & RemoteOptions = {}, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R): Promise<unknown> {
    return rejecting(() => {
      this.#live();
      if (this.#edits.length) fn = editGenerate<T, R>(this.#edits, fn);
      if (options.remote !== undefined) return this.#remoteFor(options).then((b) => b.generate<T, R>(input, options, fn));
      return this.#rt.generate<T, R>(input, options, fn);
    });
  }

  /** generate() as an async iterator of token events; `result` resolves like generate(). */
  stream<R extends object | void = void>(input: TraceInput, options: GenerateOptions = {}, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R) {
    return stream((onToken) => this.generate(input, { ...options, onToken }, fn), options.onToken);
  }

  /** @internal a plain forward (no interventions): logits and, optionally, the sites that fired */
  async forwardRaw(input: TraceInput, options: TraceOptions = {}): Promise<{ logits: Tensor; fired?: string[] }> {
    const rt = this.#localRuntime();
    const { graph } = rt.recordNew((g) => rt.recordTrace(g, input, () => undefined));
    const { raw } = await rt.submit(graph, undefined, { ...options, returnLogits: true });
    return { logits: new Tensor(raw.logits!), fired: raw.fired };
  }

  /**
   * Frees the model's native memory now (a running forward finishes first), unless handles made
   * by edit() still share it: then this handle is closed and the last one frees the weights.
   */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await this.#shared.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}
