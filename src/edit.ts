// model.edit(fn): interventions that apply to every later trace, session and generation of a
// model handle, like nnsight's `model.edit()`. Nothing is compiled into the weights: each
// request records the edits first (on the whole batch, before the request's own
// interventions), so an edited handle shares the loaded weights with the original and costs
// nothing but its list of functions. Local and remote models alike (the edits travel in the graph).
import type { TraceInput } from './inputs.js';
import type { ModelBackend } from './runtime.js';
import type { GenerationScope } from './generate.js';
import type { Session } from './trace/session.js';
import type { Tracer } from './trace/tracer.js';
import type { EnvoyOf } from './trace/types.js';

/** An edit: records interventions on the model's envoys (its return value is ignored). */
export type EditFn<T = unknown> = (m: EnvoyOf<T>) => unknown;

export interface EditOptions {
  /** edit this handle instead of returning a new one (default false) */
  inplace?: boolean;
}

/**
 * The native weights (or the server connection) several handles share: `model.edit()` adds a
 * handle; the weights are freed when the last handle is disposed.
 */
export class SharedBackend {
  #handles = 1;
  constructor(readonly backend: ModelBackend) {}

  /** one more handle on these weights */
  retain(): void {
    this.#handles++;
  }

  /** a handle is done: the last one frees the weights */
  async release(): Promise<void> {
    if (--this.#handles === 0) await this.backend.dispose();
  }
}

/** Checks an edit function and records it once on a throwaway graph, so a mistake throws at edit() with its line. */
export function checkEdit(backend: ModelBackend, fn: unknown): void {
  if (typeof fn !== 'function') throw new Error('model.edit(fn): fn must be a function of the model envoy');
  backend.recordNew((g) => backend.recordTrace(g, [0], (m) => void (fn as EditFn)(m)));
}

function applyAll(edits: readonly EditFn[], m: unknown): void {
  for (const e of edits) e(m as never);
}

type TraceFn<T, R> = (m: EnvoyOf<T>, tracer: Tracer<T>) => R;

/** trace()'s arguments with the edits recorded first, on the whole batch. */
export function editTrace<T, R>(edits: readonly EditFn[], input: TraceInput | ((tracer: Tracer<T>) => R), fn?: TraceFn<T, R>): (tracer: Tracer<T>) => R {
  if (typeof input === 'function')
    return (tracer) => {
      tracer.whole((m) => applyAll(edits, m));
      return (input as (tracer: Tracer<T>) => R)(tracer);
    };
  if (typeof fn !== 'function') throw new Error('model.trace(input, fn): fn must be a function');
  return (tracer) => {
    tracer.whole((m) => applyAll(edits, m));
    return tracer.invoke(input, (m) => fn(m, tracer));
  };
}

/** session()'s callback with every s.trace recording the edits first. */
export function editSession<T, R>(edits: readonly EditFn[], fn: (s: Session<T>) => R): (s: Session<T>) => R {
  if (typeof fn !== 'function') return fn; // the session reports it
  return (s) => {
    const edited = Object.create(s) as Session<T>;
    edited.trace = <R2>(input: TraceInput | ((tracer: Tracer<T>) => R2), f?: TraceFn<T, R2>) => s.trace<R2>(editTrace<T, R2>(edits, input, f));
    return fn(edited);
  };
}

/** generate()'s callback with the edits applied at every step (gen.all), before fn's own. */
export function editGenerate<T, R>(edits: readonly EditFn[], fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R): (m: EnvoyOf<T>, gen: GenerationScope<T>) => R {
  if (fn !== undefined && typeof fn !== 'function') throw new Error('model.generate(input, options, fn): fn must be a function');
  return (m, gen) => {
    gen.all((mm) => applyAll(edits, mm));
    return fn ? fn(m, gen) : (undefined as R);
  };
}
