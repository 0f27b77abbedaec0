// The session context: several traces recorded into one graph and sent as one request, so
// proxies flow from one trace to the next natively.
import type { TraceInput } from '../inputs.js';
import { Graph } from './graph.js';
import { recordTrace, type RecordingHost, type Tracer } from './tracer.js';
import type { EnvoyOf } from './types.js';

/** Given to session callbacks: each trace runs in order inside one request. */
export class Session<T = unknown> {
  /** @internal */
  constructor(
    private readonly host: RecordingHost,
    private readonly graph: Graph,
  ) {}

  trace<R>(input: TraceInput | ((tracer: Tracer<T>) => R), fn?: (m: EnvoyOf<T>, tracer: Tracer<T>) => R): R {
    return recordTrace<T, R>(this.host, this.graph, input, fn);
  }
}

/**
 * Records a session: `fn` with a Session over a new graph. The graph replays `fn` when an
 * error needs a source line. Returns the graph and fn's result.
 */
export function recordSession<T, R>(host: RecordingHost, padId: number, fn: (s: Session<T>) => R): { graph: Graph; result: R } {
  if (typeof fn !== 'function') throw new Error('model.session(fn): fn must be a function');
  const graph = new Graph(padId);
  graph.replayWith(() => {
    const g = new Graph(padId, true);
    fn(new Session<T>(host, g));
    return g;
  });
  const result = fn(new Session<T>(host, graph));
  if (result instanceof Promise) throw new Error('model.session(fn): fn must record synchronously (no async/await inside)');
  if (graph.traceCount === 0) throw new Error('model.session(fn): the session recorded no trace (call s.trace inside it)');
  return { graph, result };
}
