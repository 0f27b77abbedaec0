// Generation with interventions at every step: the loop runs natively (one forward a step, the
// key/value-cache graph when the export has one); gen.all / gen.iter scope nodes to steps.
// generate() and stream() here are LanguageModel's, on its runtime.
import { CancelFlag, cancelFlag } from './native.js';
import type { TraceInput } from './inputs.js';
import type { Manifest } from './manifest.js';
import type { Tokenizer } from './tokenizer.js';
import type { NativeModel } from './native.js';
import type { RequestQueue } from './queue.js';
import type { EnvoyOf, Resolved } from './trace/types.js';
import type { Graph } from './trace/graph.js';
import type { RecordingHost, Tracer } from './trace/tracer.js';
import { markSaved, resolveSaved, substitute } from './trace/proxy.js';
import { cachePaths, recordCache, type Cache, type CacheFilter, type CacheOptions } from './trace/cache.js';

export interface GenerateOptions {
  /** new tokens at most (default 20) */
  maxNewTokens?: number;
  /** 0 (the default) is greedy */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** makes sampling reproducible */
  seed?: number;
  /** stop strings and/or token ids (the end-of-sequence token always stops) */
  stop?: string | number | Array<string | number>;
  /** aborts at the next step (or at the next module of a step an intervention applies at); rejects with the signal's reason */
  signal?: AbortSignal;
  /** each step's new tokens, as they come */
  onToken?: (event: TokenEvent) => void;
  /** after each step: steps done of maxNewTokens (generation may stop sooner, at a stop or end of text) */
  onProgress?: (progress: GenerateProgress) => void;
  /** use the key/value cache when the export has one (default true) */
  useCache?: boolean;
}

export interface GenerateProgress {
  /** steps done */
  step: number;
  maxNewTokens: number;
  /** step / maxNewTokens */
  fraction: number;
}

export interface TokenEvent {
  step: number;
  /** one token per row; -1 for rows that had already stopped */
  tokens: number[];
  /** each row's generated text so far */
  text: string[];
}

/** The second argument of generate's callback: scopes interventions to steps. */
export class GenerationScope<T = unknown> {
  /** @internal */
  constructor(
    private readonly graph: Graph,
    private readonly m: EnvoyOf<T>,
    private readonly maxNewTokens: number,
    private readonly manifest?: Manifest,
  ) {}

  /**
   * tracer.cache() in a generation: at step 0 in fn's body, at every step inside gen.all (each
   * value an array, one per step), at the steps of a gen.iter.
   */
  cache(filter?: CacheFilter, options?: CacheOptions): Cache {
    if (!this.manifest) throw new Error('gen.cache: this generation scope has no module tree');
    return recordCache(this.m, this.manifest, cachePaths(this.manifest, filter), Array.isArray(filter), options);
  }

  /** Records `fn` once; its interventions apply at every step. Saved values become arrays (one per step). */
  all(fn: (m: EnvoyOf<T>) => unknown): void {
    this.scoped([0, -1], () => fn(this.m));
  }

  /**
   * Records `fn` once per step of `range` ([begin, end), or one step), each with that step's
   * number: `gen.iter([0, 3], (m, step) => ...)` applies at steps 0, 1 and 2.
   */
  iter(range: number | [number, number], fn: (m: EnvoyOf<T>, step: number) => unknown): unknown[] {
    const [begin, end] = typeof range === 'number' ? [range, range + 1] : range;
    if (!Number.isInteger(begin) || begin < 0 || !(end > begin))
      throw new Error(`gen.iter: range must be a step or [begin, end) with 0 <= begin < end, got ${JSON.stringify(range)}`);
    const last = Math.min(end, this.maxNewTokens);
    const out: unknown[] = [];
    for (let step = begin; step < last; step++) out.push(this.scoped([step, step + 1], () => fn(this.m, step)));
    return out;
  }

  private scoped<R>(steps: [number, number], body: () => R): R {
    return this.graph.withSteps(steps, body);
  }
}

/** What stop handling needs of a model. */
type Vocab = { manifest: Manifest; tokenizer: Tokenizer };

export function normalizeStops(model: Vocab, stop: GenerateOptions['stop']): { ids: number[]; strings: string[] } {
  const list = stop === undefined ? [] : Array.isArray(stop) ? stop : [stop];
  const ids: number[] = [];
  const strings: string[] = [];
  for (const s of list) {
    if (typeof s === 'number') {
      if (!Number.isInteger(s) || s < 0 || s >= model.manifest.vocabSize) throw new Error(`generate: stop id ${s} is not a token id`);
      ids.push(s);
    } else if (typeof s === 'string' && s.length > 0) strings.push(s);
    else throw new Error('generate: stop must hold non-empty strings or token ids');
  }
  const eos = model.manifest.specialTokens?.eos;
  if (eos !== null && eos !== undefined) ids.push(eos);
  return { ids, strings };
}

/** Cuts a row at the first stop string, keeping the tokens up to the one that completed it. */
export function cutAtStop(model: Vocab, row: number[], strings: string[]): number[] {
  if (!strings.length) return row;
  for (let n = 1; n <= row.length; n++) {
    const text = model.tokenizer.decode(row.slice(0, n));
    if (strings.some((s) => text.includes(s))) return row.slice(0, n);
  }
  return row;
}

export function validateGenerateOptions(o: GenerateOptions): void {
  const check = (name: keyof GenerateOptions, ok: (v: number) => boolean, what: string) => {
    const v = o[name];
    if (v !== undefined && (typeof v !== 'number' || !ok(v))) throw new Error(`generate: ${name} must be ${what}, got ${String(v)}`);
  };
  check('maxNewTokens', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  check('temperature', (v) => v >= 0 && Number.isFinite(v), 'a number >= 0');
  check('topK', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  check('topP', (v) => v > 0 && v <= 1, 'in (0, 1]');
  check('seed', (v) => Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER, 'a non-negative integer');
  if (o.onToken !== undefined && typeof o.onToken !== 'function') throw new Error('generate: onToken must be a function');
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

/** What generate() resolves to: the result plus fn's return value with proxies replaced. */
export type GenerateOutput<R> = GenerateResult & (R extends object ? Resolved<R> : object);

/** What recording a generation needs of its model (runtime.ts's ModelRecorder). */
export interface GenerationRecorder extends RecordingHost {
  readonly maxPositions: number;
  recordNew<R>(record: (graph: Graph) => R): { graph: Graph; result: R };
  recordTrace<T, R>(graph: Graph, input: TraceInput | ((tracer: Tracer<T>) => R), fn?: (m: EnvoyOf<T>, tracer: Tracer<T>) => R): R;
}

/** What a local generation needs of its model (runtime.ts's ModelRuntime). */
export interface GenerationHost extends GenerationRecorder {
  readonly dir: string;
  readonly native: NativeModel;
  readonly queue: RequestQueue;
  readonly padId: number;
}

/**
 * Records a generation's graph (fn's step-0 interventions and gen.all/gen.iter) and checks that
 * the longest prompt plus maxNewTokens fits the model: what a local and a remote generation share.
 */
export function recordGeneration<T, R>(host: GenerationRecorder, input: TraceInput, options: GenerateOptions, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R) {
  validateGenerateOptions(options);
  const maxNewTokens = options.maxNewTokens ?? 20;
  const stops = normalizeStops(host, options.stop);
  const { graph, result } = host.recordNew((g) =>
    host.recordTrace<T, R | undefined>(g, input, (m) => (fn ? fn(m, new GenerationScope<T>(g, m, maxNewTokens, host.manifest)) : undefined)),
  );
  const longest = Math.max(...graph.rowsOf(0).map((r) => r.ids.length));
  const maxPos = host.maxPositions;
  if (maxPos && longest + maxNewTokens > maxPos)
    throw new Error(`generate: the prompt (${longest} tokens) plus maxNewTokens (${maxNewTokens}) exceeds the model's ${maxPos} positions`);
  const sampling = {
    maxNewTokens,
    temperature: options.temperature ?? 0,
    topK: options.topK ?? 0,
    topP: options.topP ?? 1,
    seed: options.seed ?? Math.floor(Math.random() * 2 ** 32),
    stopIds: stops.ids,
  };
  return { graph, result, stops, sampling, useCache: options.useCache ?? true };
}

// models already warned that they have no key/value-cache graph (once per model)
const warnedNoCache = new WeakSet<GenerationHost>();

/** LanguageModel.generate on `rt` (see there). */
export async function generate<T, R extends object | void>(
  rt: GenerationHost,
  input: TraceInput,
  options: GenerateOptions,
  fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R,
): Promise<GenerateOutput<R>> {
  options.signal?.throwIfAborted();
  const { signal } = options;
  const nm = rt.native;
  const single = typeof input === 'string' || (Array.isArray(input) && input.every((x) => typeof x === 'number'));
  const { graph, result, stops, sampling, useCache } = recordGeneration<T, R>(rt, input, options, fn);
  const { maxNewTokens } = sampling;
  const rows = graph.rowsOf(0);
  if (useCache && !nm.hasCache && !warnedNoCache.has(rt)) {
    warnedNoCache.add(rt);
    process.emitWarning(`${rt.dir} has no key/value-cache graph (step.pt): generate() recomputes the whole sequence at every step, which is slower`, 'TorchsightWarning');
  }
  markSaved(result);
  graph.seal();
  const cancel = cancelFlag();
  const sofar: number[][] = Array.from({ length: rows.length }, () => []);
  const done = new Array<boolean>(rows.length).fill(false);
  let eventsSeen = 0;
  let allSeen: (() => void) | undefined;
  let callbackError: { error: unknown } | undefined;
  let expectedEvents = Infinity;
  const onStep = (tokens: number[], step: number) => {
    eventsSeen++;
    if (allSeen && eventsSeen >= expectedEvents) allSeen();
    tokens.forEach((t, b) => t >= 0 && !done[b] && sofar[b].push(t));
    const text = sofar.map((r) => rt.tokenizer.decode(r));
    if (stops.strings.length) {
      text.forEach((t, b) => {
        if (tokens[b] < 0 || stops.strings.some((s) => t.includes(s))) done[b] = true;
      });
      if (done.every(Boolean)) Atomics.compareExchange(cancel, 0, CancelFlag.Running, CancelFlag.Stop);
    }
    // the user's callbacks run on a native event: an exception stops the generation and
    // becomes its rejection (N-API would otherwise drop it)
    if (callbackError) return;
    try {
      options.onToken?.({ step, tokens, text });
      options.onProgress?.({ step: step + 1, maxNewTokens, fraction: Math.min(1, (step + 1) / maxNewTokens) });
    } catch (error) {
      callbackError = { error };
      Atomics.store(cancel, 0, CancelFlag.Abort);
    }
  };
  const request = { ...graph.request(nm), cancel };
  const genOptions = { ...sampling, padId: rt.padId, useCache };
  const needEvents = !!options.onToken || !!options.onProgress || stops.strings.length > 0;
  const start = () => nm.generate(request, genOptions, needEvents ? onStep : undefined);
  const raw = await rt.queue.run({ signal, cancel, explain: (m) => graph.explain(m) }, start, (r) => r).catch((e) => {
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
  const tokens = raw.tokens.map((r) => cutAtStop(rt, r, stops.strings));
  const text = tokens.map((r) => rt.tokenizer.decode(r));
  const extra = (substitute(result) ?? {}) as object;
  return {
    ...extra,
    tokens: single ? tokens[0] : tokens,
    text: single ? text[0] : text,
    steps: raw.steps,
    usedCache: raw.usedCache,
  } as GenerateOutput<R>;
}

/** generate() as an async iterator of token events, with `result` resolving like generate(). */
export function stream<R>(start: (onToken: (e: TokenEvent) => void) => Promise<GenerateResult & R>, onToken?: (e: TokenEvent) => void) {
  const queue: TokenEvent[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  const result = start((e) => {
    queue.push(e);
    onToken?.(e);
    wake?.();
  });
  // token events may arrive after the promise settles: end once the last step's event is in
  let expected = Infinity;
  result.then(
    (r) => {
      expected = r.steps;
      finished = true;
      wake?.();
    },
    (e) => {
      failure = e;
      finished = true;
      wake?.();
    },
  );
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
