// LanguageModel: loads a model folder and runs traces and sessions on it.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { native, type NativeModel, type RunResult, type ApplyRule } from './native.js';
import { buildTree, formatTree, readManifest, type Manifest, type ModuleNode, type Struct } from './manifest.js';
import { Tokenizer } from './tokenizer.js';
import { toRows, type TraceInput } from './inputs.js';
import { Graph, userLocation } from './trace/graph.js';
import { siteIdsOf } from './trace/wire.js';
import { envoyOf, type Envoy, type Scope } from './trace/envoy.js';
import type { EnvoyOf } from './trace/types.js';
import { markSaved, materialize, resolveSaved, substitute, TraceProxy } from './trace/proxy.js';
import { Tensor } from './tensor.js';
import { GenerationScope, cutAtStop, normalizeStops, validateGenerateOptions, type GenerateOptions, type TokenEvent } from './generate.js';

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
   * It also records (without running) a few thousand traces of a representative intervention,
   * so V8 has optimized the tracer before your first trace (~0.1-0.3 s).
   */
  warmup?: boolean;
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

export interface TraceOptions {
  /** Cancels the trace: queued work never starts; a running forward stops at the next module. */
  signal?: AbortSignal;
  /** @internal records every hook site that fired, in order (for tests and `inspect`) */
  recordSites?: boolean;
  /** @internal returns the last forward's logits as raw.logits (forwardRaw) */
  returnLogits?: boolean;
}

type Leaf = Extract<Struct, { kind: 'tensor' }>;

/** A trace's returned value once its results are in: proxies replaced by their values. */
function valueOf(graph: Graph, result: unknown, raw: RunResult): unknown {
  resolveSaved(graph, raw.saved);
  return substitute(result);
}

/** `f()`, with a synchronous throw turned into a rejection (for entries that are not async functions). */
function rejecting<T>(f: () => Promise<T>): Promise<T> {
  try {
    return f();
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Given to trace callbacks: adds invokes, stops the forward early. */
export class Tracer<T = unknown> {
  /** @internal */
  constructor(
    private readonly model: LanguageModel<T>,
    private readonly graph: Graph,
  ) {}

  /** Adds `input` as rows of this forward's batch; `fn` sees only those rows. Returns fn's result. */
  invoke<R>(input: TraceInput, fn: (m: EnvoyOf<T>) => R): R {
    const seg = this.graph.current;
    const rows = toRows(input, this.model.tokenizer, this.model.manifest.vocabSize);
    const index = seg.invokes.length;
    seg.invokes.push([seg.rows.length, rows.length]);
    seg.rows.push(...rows);
    if (typeof fn !== 'function') throw new Error('tracer.invoke(input, fn): fn must be a function');
    return this.model.recording(this.graph, index, fn);
  }

  /** Ends the forward as soon as everything the graph needs has run. */
  stop(): void {
    this.graph.current.stop = true;
  }
}

/** Given to session callbacks: each trace runs in order inside one request. */
export class Session<T = unknown> {
  /** @internal */
  constructor(
    private readonly model: LanguageModel<T>,
    private readonly graph: Graph,
  ) {}

  trace<R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn?: (m: EnvoyOf<T>, tracer: Tracer<T>) => R): R {
    return this.model.recordTrace<R>(this.graph, input, fn);
  }
}

/**
 * A loaded model. `T` describes its module tree (the exporter's model.d.ts) and types the envoys
 * of trace callbacks: `LanguageModel.load<GPT2LMHeadModel>(dir)`. Without it envoys are `any`.
 */
export class LanguageModel<T = unknown> {
  readonly dir: string;
  readonly manifest: Manifest;
  readonly tokenizer: Tokenizer;
  #native: NativeModel | undefined;
  #scope: Scope | undefined;
  #tree: { root: ModuleNode; byPath: Map<string, ModuleNode> };
  #queue: Promise<unknown> = Promise.resolve();
  #pending = 0; // requests queued or running
  #warnedNoCache = false;

  private constructor(dir: string, manifest: Manifest, tokenizer: Tokenizer, nativeModel: NativeModel) {
    this.dir = dir;
    this.manifest = manifest;
    this.tokenizer = tokenizer;
    this.#native = nativeModel;
    this.#tree = buildTree(manifest);
  }

  /** Loads a model folder written by the exporter (model.pt, tokenizer.json, torchsight.json). */
  static async load<T = unknown>(dir: string, options: LoadOptions = {}): Promise<LanguageModel<T>> {
    if (typeof dir !== 'string') throw new Error('LanguageModel.load(dir): dir must be a string');
    const path = resolve(dir);
    if (!existsSync(path) || !statSync(path).isDirectory()) throw new Error(`${path}: no such model folder`);
    const manifest = readManifest(path);
    const modelFile = join(path, 'model.pt');
    if (!existsSync(modelFile)) throw new Error(`${modelFile}: not found`);
    const tokFile = join(path, 'tokenizer.json');
    if (!existsSync(tokFile)) throw new Error(`${tokFile}: not found`);
    const onProgress = options.onProgress;
    if (onProgress !== undefined && typeof onProgress !== 'function') throw new Error('LanguageModel.load: onProgress must be a function');
    onProgress?.({ phase: 'tokenizer', done: 0, total: 1, fraction: 0 });
    const tokenizer = Tokenizer.fromFile(tokFile);
    const addon = native();
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
    const cfg = (manifest.config ?? {}) as Record<string, unknown>;
    const maxPositions = Number(cfg.n_positions ?? cfg.max_position_embeddings ?? 0) || undefined;
    nm.configure({ vocabSize: manifest.vocabSize, maxPositions, apply, cache: manifest.step?.cache });
    const model = new LanguageModel<T>(path, manifest, tokenizer, nm);
    try {
      if (options.warmup ?? true) await model.#warmup(onProgress);
      onProgress?.({ phase: 'ready', done: 1, total: 1, fraction: 1 });
    } catch (e) {
      nm.dispose();
      throw e;
    }
    return model;
  }

  /**
   * TorchScript's profiling executor (CUDA) profiles a graph at its first run and optimizes it at
   * the second; each model has two graphs per forward kind (with its hook sites, and without them
   * for forwards no intervention touches), so both are run twice here: plain forwards, forwards
   * that read the logits' site, and with a key/value-cache graph, two three-step greedy
   * generations (prefill and decode), on 8 tokens.
   */
  async #warmup(onProgress: LoadOptions['onProgress']): Promise<void> {
    const nm = this.native;
    const cfg = (this.manifest.config ?? {}) as Record<string, unknown>;
    const maxPos = Number(cfg.n_positions ?? cfg.max_position_embeddings ?? 0) || 64;
    const ids = Array.from({ length: Math.max(1, Math.min(8, maxPos - 4)) }, (_, i) => (i + 1) % this.manifest.vocabSize);
    // a site every forward fires: the first tensor of the model's own output
    const root = this.manifest.modules.find((m) => m.path === '');
    const first = (s: Struct | null | undefined): Leaf | undefined => (s?.kind === 'tensor' ? s : s?.kind === 'tuple' ? s.items.map(first).find(Boolean) : undefined);
    const leaf = first(root?.output);
    const site = leaf?.site && !leaf.pruned ? leaf.site : undefined;
    const runs: { read: boolean; generate: boolean }[] = [];
    for (const read of site ? [false, true] : [false]) {
      runs.push({ read, generate: false }, { read, generate: false });
      if (nm.hasCache) runs.push({ read, generate: true });
    }
    for (let i = 0; i < runs.length; i++) {
      onProgress?.({ phase: 'warmup', done: i, total: runs.length, fraction: 1 });
      const { read, generate } = runs[i];
      const graph = new Graph(this.padId);
      this.recordTrace(graph, ids, () => {
        if (!read) return;
        if (generate) graph.steps = [0, -1];
        graph.add('read', [], site, 0);
        graph.steps = undefined;
      });
      // a site list keeps these on the graph with every site (which they warm), rather than
      // building a site graph for the logits' site
      const request = { ...graph.request(nm), recordSites: read };
      if (!generate) await nm.run(request);
      else await nm.generate(request, { maxNewTokens: 3, temperature: 0, topK: 0, topP: 1, seed: 0, stopIds: [], padId: this.padId, useCache: true });
    }
    this.#warmRecording(ids);
  }

  /**
   * V8 optimizes a function only after it has run for a while, and most of the tracer runs a
   * few times per trace: for the first thousands of traces it would record with unoptimized
   * code. In place (after a forward, on the CPU VM of docs/benchmarks.md) the bench's 12-save
   * trace recorded in ~200 us that way and in ~130 us once optimized. So load records (and
   * sends nothing of) 2500 traces of an intervention like a user's: read the first output of
   * up to 12 modules spread over the model, patch one in place with a Tensor, return them all.
   * A model whose structure this cannot record is simply not warmed.
   */
  #warmRecording(ids: number[]): void {
    const readable = (s: Struct | null | undefined): s is Leaf => s?.kind === 'tensor' && !!s.site && !s.pruned;
    const eligible = this.manifest.modules.filter(
      (m) => m.path !== '' && m.calls > 0 && (readable(m.output) || (m.output?.kind === 'tuple' && readable(m.output.items[0]))),
    );
    const n = Math.min(12, eligible.length);
    if (n === 0) return;
    const paths = Array.from({ length: n }, (_, k) => eligible[Math.floor((k * eligible.length) / n)].path.split('.'));
    // a list of blocks (ModuleList) whose every block is readable is also read with map()
    const byPath = new Set(eligible.map((m) => m.path));
    const listAt = eligible.map((m) => m.path.split('.')).find((segs) => segs.some((x) => /^\d+$/.test(x)));
    const list = listAt?.slice(0, listAt.findIndex((x) => /^\d+$/.test(x)));
    const listLen = list ? this.#tree.byPath.get(list.join('.'))?.children.size ?? 0 : 0;
    const mapList = !!list && listLen > 0 && Array.from({ length: listLen }, (_, i) => byPath.has([...list, i].join('.'))).every(Boolean);
    const first = (o: unknown) => (o instanceof TraceProxy ? o : (o as unknown[])[0]) as TraceProxy;
    const at = (m: unknown, segs: string[]) => segs.reduce((e, seg) => (e as Record<string, unknown>)[seg], m);
    const patch = Tensor.from([0]);
    const body = (m: unknown) => {
      const out: unknown[] = [];
      for (let k = 0; k < paths.length; k++) {
        const v = first((at(m, paths[k]) as { output: unknown }).output);
        if (k === 0) v.index(':, -1').add_(patch);
        out.push(v);
      }
      if (mapList) out.push((at(m, list!) as { map(f: (b: { output: unknown }) => unknown): unknown[] }).map((b) => first(b.output)));
      return out;
    };
    try {
      for (let i = 0; i < 2500; i++) {
        const graph = new Graph(this.padId);
        const result = this.recordTrace(graph, ids, body);
        markSaved(result);
        graph.request(this.native, true);
        for (const p of graph.proxies) p?.resolve(null);
        substitute(result);
      }
    } catch {
      // an export this does not fit only loses the warm-up
    } finally {
      patch.dispose();
    }
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
    if (!this.#native) throw new Error('this model was disposed');
    return this.#native;
  }

  /** Every module path, as named_modules() gives them (the root excluded). */
  modulePaths(): string[] {
    return this.manifest.modules.map((m) => m.path).filter((p) => p !== '');
  }

  /** The module tree, one module a line, like PyTorch's repr. */
  toString(): string {
    return formatTree(this.#tree.root);
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  /** @internal runs `fn` with the root envoy recording into `graph`'s invoke `invoke` */
  recording<R>(graph: Graph, invoke: number, fn: (m: Envoy) => R): R {
    const scope = (this.#scope ??= { graph: undefined, invoke: 0, manifest: this.manifest, byPath: this.#tree.byPath, envoys: new Map(), siteIds: siteIdsOf(this.native) });
    const prev = { graph: scope.graph, invoke: scope.invoke };
    scope.graph = graph;
    scope.invoke = invoke;
    try {
      return fn(envoyOf(scope, this.#tree.root));
    } finally {
      scope.graph = prev.graph;
      scope.invoke = prev.invoke;
    }
  }

  /**
   * One forward pass with interventions. `fn` runs now and records; the graph runs natively
   * inside the forward. Resolves to fn's return value with proxies replaced by Tensors.
   * Also `trace((tracer) => { tracer.invoke(a, fn); tracer.invoke(b, fn2) })` for several invokes.
   */
  trace<R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn?: ((m: EnvoyOf<T>, tracer: Tracer<T>) => R) | TraceOptions, options: TraceOptions = {}): Promise<Resolved<R>> {
    // not an async function: the one await is in #send (each level of async costs a microtask
    // hop), so a throw while recording becomes a rejection here
    return rejecting(() => {
      if (typeof input === 'function' && fn && typeof fn === 'object') options = fn;
      const record = (capture?: boolean) => {
        const g = new Graph(this.padId, capture);
        return { g, result: this.recordTrace(g, input, typeof fn === 'function' ? fn : undefined) };
      };
      const { g: graph, result } = record();
      graph.rerecord = () => record(true).g;
      return this.#sendGraph(graph, result, options, (raw) => valueOf(graph, result, raw)) as Promise<Resolved<R>>;
    });
  }

  /** Several traces as one request: proxies flow from one trace to the next natively. */
  session<R>(fn: (s: Session<T>) => R, options: TraceOptions = {}): Promise<Resolved<R>> {
    return rejecting(() => {
      if (typeof fn !== 'function') throw new Error('model.session(fn): fn must be a function');
      const graph = new Graph(this.padId);
      graph.rerecord = () => {
        const g = new Graph(this.padId, true);
        fn(new Session(this, g));
        return g;
      };
      const result = fn(new Session(this, graph));
      if (result instanceof Promise) throw new Error('model.session(fn): fn must record synchronously (no async/await inside)');
      if (graph.segments.length === 0) throw new Error('model.session(fn): the session recorded no trace (call s.trace inside it)');
      return this.#sendGraph(graph, result, options, (raw) => valueOf(graph, result, raw)) as Promise<Resolved<R>>;
    });
  }

  /** @internal records one trace into `graph` */
  recordTrace<R>(graph: Graph, input: TraceInput | ((tracer: Tracer<T>) => R), fn?: (m: EnvoyOf<T>, tracer: Tracer<T>) => R): R {
    graph.beginTrace();
    const tracer = new Tracer<T>(this, graph);
    let result: R;
    try {
      if (typeof input === 'function') result = (input as (t: Tracer<T>) => R)(tracer);
      else {
        if (typeof fn !== 'function') throw new Error('model.trace(input, fn): fn must be a function');
        result = tracer.invoke(input, (m) => fn(m, tracer));
      }
      if (result instanceof Promise) throw new Error('the trace callback must record synchronously (no async/await inside)');
    } catch (e) {
      if (e instanceof Error && !/ at \S+:\d+:\d+$/.test(e.message)) e.message += ` (at ${userLocation(e.stack)})`;
      throw e;
    }
    materialize(result); // a returned tuple output reads its items now, inside this trace
    graph.endTrace();
    return result;
  }

  /**
   * Runs native work after the model's earlier requests (one forward at a time per model) and
   * gives its result to `then`, with the one await of a trace: an aborted signal rejects with
   * its reason (and sets the native cancel flag), and native errors get the user's source
   * locations (errors thrown by `then` pass as they are).
   */
  async #send<T, U>(graph: Graph, signal: AbortSignal | undefined, cancel: Int32Array | undefined, start: () => Promise<T>, then: (raw: T) => U): Promise<U> {
    const onAbort = () => cancel && Atomics.store(cancel, 0, 1);
    signal?.addEventListener('abort', onAbort, { once: true });
    const go = () => {
      signal?.throwIfAborted();
      return start();
    };
    // with nothing queued the request starts now, not a microtask later (a trace after a forward
    // is the common case, and each hop costs there)
    let run: Promise<T>;
    if (this.#pending === 0) {
      try {
        run = go();
      } catch (e) {
        run = Promise.reject(e);
      }
    } else {
      run = this.#queue.then(go);
    }
    this.#pending++;
    const settled = run.then(
      () => void this.#pending--,
      () => void this.#pending--,
    );
    this.#queue = settled;
    let raw: T;
    try {
      raw = await run;
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      const err = new Error(graph.explain((e as Error).message));
      (err as Error & { code?: string }).code = (e as Error & { code?: string }).code;
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    return then(raw);
  }

  /** Sends a recorded graph; `then` maps the native result (see #send). */
  #sendGraph<U>(graph: Graph, result: unknown, options: TraceOptions, then: (raw: RunResult) => U): Promise<U> {
    const { signal } = options;
    signal?.throwIfAborted();
    markSaved(result);
    graph.sealed = true;
    // the native side polls this flag at every hook site
    const cancel = signal ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
    const nm = this.native;
    const { recordSites, returnLogits } = options;
    // packed when it starts (after any queued request), into the shared transient buffer
    const start = () => {
      const request: Parameters<NativeModel['run']>[0] = graph.request(nm, true);
      request.recordSites = !!recordSites;
      request.returnLogits = !!returnLogits;
      request.cancel = cancel;
      return nm.run(request);
    };
    return this.#send(graph, signal, cancel, start, then);
  }

  /** @internal sends a recorded graph and maps the results back */
  submit(graph: Graph, result: unknown, options: TraceOptions): Promise<{ value: unknown; raw: RunResult }> {
    return rejecting(() => this.#sendGraph(graph, result, options, (raw) => ({ value: valueOf(graph, result, raw), raw })));
  }

  /**
   * Generates up to `maxNewTokens` tokens, greedy unless `temperature` > 0. `fn(m, gen)`
   * records interventions: its body applies at step 0 (the prompt), `gen.all(fn)` at every
   * step, `gen.iter([a, b], fn)` at steps a..b-1. Resolves to `{ tokens, text }` plus fn's
   * return value with proxies replaced (values saved over several steps are arrays).
   */
  async generate<R extends object | void = void>(
    input: TraceInput,
    options: GenerateOptions = {},
    fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R,
  ): Promise<GenerateResult & (R extends object ? Resolved<R> : object)> {
    validateGenerateOptions(options);
    const { signal } = options;
    signal?.throwIfAborted();
    const maxNewTokens = options.maxNewTokens ?? 20;
    const nm = this.native;
    const stops = normalizeStops(this, options.stop);
    const single = typeof input === 'string' || (Array.isArray(input) && input.every((x) => typeof x === 'number'));
    const record = (capture?: boolean) => {
      const g = new Graph(this.padId, capture);
      return { g, result: this.recordTrace(g, input, (m) => (fn ? fn(m, new GenerationScope<T>(g, m, maxNewTokens)) : undefined)) };
    };
    const { g: graph, result } = record();
    graph.rerecord = () => record(true).g;
    const seg = graph.segments[0];
    const longest = Math.max(...seg.rows.map((r) => r.ids.length));
    const cfg = (this.manifest.config ?? {}) as Record<string, unknown>;
    const maxPos = Number(cfg.n_positions ?? cfg.max_position_embeddings ?? 0);
    if (maxPos && longest + maxNewTokens > maxPos)
      throw new Error(`generate: the prompt (${longest} tokens) plus maxNewTokens (${maxNewTokens}) exceeds the model's ${maxPos} positions`);
    const useCache = options.useCache ?? true;
    if (useCache && !nm.hasCache && !this.#warnedNoCache) {
      this.#warnedNoCache = true;
      process.emitWarning(`${this.dir} has no key/value-cache graph (step.pt): generate() recomputes the whole sequence at every step, which is slower`, 'TorchsightWarning');
    }
    markSaved(result);
    graph.sealed = true;
    const cancel = new Int32Array(new SharedArrayBuffer(4)); // 1: abort, 2: stop (a stop string was seen)
    const rows = seg.rows.length;
    const sofar: number[][] = Array.from({ length: rows }, () => []);
    const done = new Array<boolean>(rows).fill(false);
    let eventsSeen = 0;
    let allSeen: (() => void) | undefined;
    const onStep = (tokens: number[], step: number) => {
      eventsSeen++;
      if (allSeen && eventsSeen >= expectedEvents) allSeen();
      tokens.forEach((t, b) => t >= 0 && !done[b] && sofar[b].push(t));
      const text = sofar.map((r) => this.tokenizer.decode(r));
      if (stops.strings.length) {
        text.forEach((t, b) => {
          if (tokens[b] < 0 || stops.strings.some((s) => t.includes(s))) done[b] = true;
        });
        if (done.every(Boolean)) Atomics.compareExchange(cancel, 0, 0, 2);
      }
      // the user's callbacks run on a native event: an exception stops the generation and
      // becomes its rejection (N-API would otherwise drop it)
      if (callbackError) return;
      try {
        options.onToken?.({ step, tokens, text });
        options.onProgress?.({ step: step + 1, maxNewTokens, fraction: Math.min(1, (step + 1) / maxNewTokens) });
      } catch (error) {
        callbackError = { error };
        Atomics.store(cancel, 0, 1);
      }
    };
    let callbackError: { error: unknown } | undefined;
    let expectedEvents = Infinity;
    const request = { ...graph.request(this.native), cancel };
    const genOptions = {
      maxNewTokens,
      temperature: options.temperature ?? 0,
      topK: options.topK ?? 0,
      topP: options.topP ?? 1,
      seed: options.seed ?? Math.floor(Math.random() * 2 ** 32),
      stopIds: stops.ids,
      padId: this.padId,
      useCache,
    };
    const needEvents = !!options.onToken || !!options.onProgress || stops.strings.length > 0;
    const raw = await this.#send(graph, signal, cancel, () => nm.generate(request, genOptions, needEvents ? onStep : undefined), (r) => r).catch((e) => {
      throw callbackError ? callbackError.error : e;
    });
    // Step events travel separately from the result: deliver every one before resolving, so no
    // callback runs after generate() has returned (native code sends exactly one a step).
    if (needEvents && eventsSeen < raw.steps) {
      expectedEvents = raw.steps;
      await new Promise<void>((r) => (allSeen = r));
    }
    if (callbackError) throw callbackError.error;
    resolveSaved(graph, raw.saved);
    const tokens = raw.tokens.map((r) => cutAtStop(this, r, stops.strings));
    const text = tokens.map((r) => this.tokenizer.decode(r));
    const extra = (substitute(result) ?? {}) as object;
    return {
      ...extra,
      tokens: single ? tokens[0] : tokens,
      text: single ? text[0] : text,
      steps: raw.steps,
      usedCache: raw.usedCache,
    } as GenerateResult & (R extends object ? Resolved<R> : object);
  }

  /** generate() as an async iterator of token events; `result` resolves like generate(). */
  stream<R extends object | void = void>(input: TraceInput, options: GenerateOptions = {}, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R) {
    const queue: TokenEvent[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: unknown;
    const result = this.generate(input, { ...options, onToken: (e) => { queue.push(e); options.onToken?.(e); wake?.(); } }, fn);
    // token events may arrive after the promise settles: end once the last step's event is in
    let expected = Infinity;
    result.then((r) => { expected = r.steps; finished = true; wake?.(); }, (e) => { failure = e; finished = true; wake?.(); });
    let seen = 0;
    const iterator = async function* (): AsyncGenerator<TokenEvent> {
      for (;;) {
        while (queue.length) {
          seen++;
          yield queue.shift()!;
        }
        if (finished && (failure !== undefined || seen >= expected)) break;
        await new Promise<void>((r) => (wake = r));
      }
      if (failure !== undefined) throw failure;
    };
    return Object.assign(iterator(), { result });
  }

  /** @internal a plain forward (no interventions): logits and, optionally, the sites that fired */
  async forwardRaw(input: TraceInput, options: TraceOptions = {}): Promise<{ logits: Tensor; fired?: string[] }> {
    const graph = new Graph(this.padId);
    this.recordTrace(graph, input, () => undefined);
    const { raw } = await this.submit(graph, undefined, { ...options, returnLogits: true });
    return { logits: new Tensor(raw.logits!), fired: raw.fired };
  }

  get padId(): number {
    const s = this.manifest.specialTokens ?? { pad: null, eos: null, bos: null };
    return s.pad ?? s.eos ?? 0;
  }

  /** Frees the model's native memory now (a running forward finishes first). */
  async dispose(): Promise<void> {
    const nm = this.#native;
    if (!nm) return;
    this.#native = undefined;
    await this.#queue;
    nm.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

export interface GenerateResult {
  /** the generated token ids (an array per row for a batch) */
  tokens: any;
  /** the generated text (an array per row for a batch) */
  text: any;
  /** forward passes run */
  steps: number;
  /** whether the key/value cache was used */
  usedCache: boolean;
}

/** fn's return type with proxies replaced by Tensors. */
export type Resolved<T> = T extends { save(): unknown; graph: unknown }
  ? Tensor
  : T extends ReadonlyArray<infer U>
    ? Resolved<U>[]
    : T extends object
      ? { [K in keyof T]: Resolved<T[K]> }
      : T;

