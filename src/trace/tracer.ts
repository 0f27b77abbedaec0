// The tracer context: what a trace callback gets (`tracer.invoke`, `tracer.stop`) and how one
// trace is recorded into a graph (recordTrace), inside a single trace or a session.
import { toRows, type TraceInput } from '../inputs.js';
import type { Manifest } from '../manifest.js';
import type { Tokenizer } from '../tokenizer.js';
import type { Envoy } from './envoy.js';
import { userLocation, type Graph } from './graph.js';
import { materialize } from './proxy.js';
import type { EnvoyOf } from './types.js';
import { cachePaths, recordCache, type Cache, type CacheFilter, type CacheOptions } from './cache.js';

/** What recording needs of a model: its tokenizer and vocabulary, and its envoys. */
export interface RecordingHost {
  readonly tokenizer: Tokenizer;
  readonly manifest: Manifest;
  /** runs `fn` with the root envoy recording into `graph`'s invoke `invoke` */
  recording<R>(graph: Graph, invoke: number, fn: (m: Envoy) => R): R;
}

/** Given to trace callbacks: adds invokes, stops the forward early. */
export class Tracer<T = unknown> {
  /** the invoke whose callback is running (cache() records into it), else undefined */
  #open: number | undefined;

  /** @internal */
  constructor(
    private readonly host: RecordingHost,
    private readonly graph: Graph,
  ) {}

  /** Adds `input` as rows of this forward's batch; `fn` sees only those rows. Returns fn's result. */
  invoke<R>(input: TraceInput, fn: (m: EnvoyOf<T>) => R): R {
    const rows = toRows(input, this.host.tokenizer, this.host.manifest.vocabSize);
    const index = this.graph.addInvoke(rows);
    if (typeof fn !== 'function') throw new Error('tracer.invoke(input, fn): fn must be a function');
    const prev = this.#open;
    this.#open = index;
    try {
      return this.host.recording(this.graph, index, fn);
    } finally {
      this.#open = prev;
    }
  }

  /**
   * Every module's output and inputs (or those `filter` picks), read where the forward runs
   * them, keyed by path; Tensors once the trace has resolved. Inside an invoke, that invoke's
   * rows; outside any, the whole batch.
   */
  cache(filter?: CacheFilter, options?: CacheOptions): Cache {
    const paths = cachePaths(this.host.manifest, filter);
    return this.host.recording(this.graph, this.#open ?? -1, (m) => recordCache(m, this.host.manifest, paths, Array.isArray(filter), options));
  }

  /** @internal records `fn` on the whole batch, whatever invoke is open (model.edit's interventions) */
  whole<R>(fn: (m: Envoy) => R): R {
    return this.host.recording(this.graph, -1, fn);
  }

  /** Ends the forward as soon as everything the graph needs has run. */
  stop(): void {
    this.graph.stopTrace();
  }
}

/**
 * Records one trace into `graph`: `input` with `fn(m, tracer)`, or a function of the tracer
 * alone that adds its own invokes. A recording error gets the user's source line.
 */
export function recordTrace<T, R>(host: RecordingHost, graph: Graph, input: TraceInput | ((tracer: Tracer<T>) => R), fn?: (m: EnvoyOf<T>, tracer: Tracer<T>) => R): R {
  graph.beginTrace();
  const tracer = new Tracer<T>(host, graph);
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
