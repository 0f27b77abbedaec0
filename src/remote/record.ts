// A request recorded as a local trace, session or generation would record it, but packed for a
// server instead of run here: what to send (envelope.ts's WireRequest) and how to give the
// server's answer back to the user's proxies. The recorder's site table is the server's, so the
// graph names sites by the ids the server's native model uses.
import type { ModelRecorder, Resolved } from '../runtime.js';
import { valueOf } from '../runtime.js';
import type { TraceInput } from '../inputs.js';
import type { Graph } from '../trace/graph.js';
import { markSaved } from '../trace/proxy.js';
import { recordSession, type Session } from '../trace/session.js';
import type { Tracer } from '../trace/tracer.js';
import type { EnvoyOf } from '../trace/types.js';
import { recordGeneration, type GenerationScope, type GenerateOptions } from '../generate.js';
import type { RequestKind, WireGenOptions, WireRequest, WireResult } from './envelope.js';

/** A recorded request: what to send, how to word the server's errors, how to read its answer. */
export interface Recorded<R> {
  request: WireRequest;
  /** a server message with node markers, in the user's source lines (Graph.explain) */
  explain(message: string): string;
  /** fn's return value with proxies replaced by the result's values */
  resolve(result: WireResult): R;
}

/** What a generation's answer resolves to before the caller shapes it. */
export interface RecordedGeneration<R> {
  value: Resolved<R>;
  tokens: number[][];
  steps: number;
  usedCache: boolean;
}

function recorded<R>(kind: RequestKind, host: ModelRecorder, graph: Graph, result: unknown, generate?: WireGenOptions): Recorded<R> {
  markSaved(result);
  graph.seal();
  const { traces, graph: packed } = graph.request(host.siteTable());
  return {
    request: { kind, traces, graph: packed, ...(generate ? { generate } : {}) },
    explain: (m) => graph.explain(m),
    resolve: (res) => valueOf(graph, result, res) as R,
  };
}

/** Records `model.trace(input, fn)` for a server. */
export function recordTraceRequest<T, R>(host: ModelRecorder, input: TraceInput | ((tracer: Tracer<T>) => R), fn?: (m: EnvoyOf<T>, tracer: Tracer<T>) => R): Recorded<Resolved<R>> {
  const { graph, result } = host.recordNew((g) => host.recordTrace<T, R>(g, input, fn));
  return recorded('trace', host, graph, result);
}

/** Records `model.session(fn)` for a server. */
export function recordSessionRequest<T, R>(host: ModelRecorder, fn: (s: Session<T>) => R): Recorded<Resolved<R>> {
  const { graph, result } = recordSession<T, R>(host, host.padId, fn);
  return recorded('session', host, graph, result);
}

/** Records `model.generate(input, options, fn)` for a server (checks the options as a local generation does). */
export function recordGenerateRequest<T, R>(
  host: ModelRecorder,
  input: TraceInput,
  options: GenerateOptions,
  fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R,
): Recorded<RecordedGeneration<R>> & { stopStrings: string[] } {
  const { graph, result, stops, sampling, useCache } = recordGeneration<T, R>(host, input, options, fn);
  const gen: WireGenOptions = { ...sampling, stopStrings: stops.strings, useCache };
  const r = recorded<Resolved<R>>('generate', host, graph, result, gen);
  return {
    ...r,
    stopStrings: stops.strings,
    resolve: (res) => ({ value: r.resolve(res), tokens: res.generate!.tokens, steps: res.generate!.steps, usedCache: res.generate!.usedCache }),
  };
}
