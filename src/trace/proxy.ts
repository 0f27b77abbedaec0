// Proxies: values inside a trace. Every op on one records a graph node; nothing runs until
// the trace is sent. After it resolves, saved proxies carry `.value`.
import { installOps, normalizeArgs, returnsPair, type BoundOp, type TensorOps } from '../ops.js';
import { NODE_REF, RECORD, tupleItems, type ProxyLike } from '../markers.js';
import { Tensor, fromNative } from '../tensor.js';
import type { Graph } from './graph.js';

const NOT_YET = Symbol('not yet');


export class TraceProxy {
  #value: unknown = NOT_YET;

  /** @internal an argument that is a proxy refers to its node (wire.ts) */
  declare readonly [NODE_REF]: true;
  static {
    // on the prototype, not per instance: recording makes many proxies
    Object.defineProperty(this.prototype, NODE_REF, { value: true });
    // the op methods of ops.json, each recording a node (recordOp, below)
    installOps(this.prototype, recordOp);
  }

  /** @internal */
  constructor(
    /** @internal */
    readonly graph: Graph,
    readonly id: number,
    readonly invoke: number | undefined,
  ) {
    graph.bindProxy(id, this);
  }

  /** Keeps this value after the trace: it becomes `.value` (a Tensor). */
  save(): this {
    this.graph.save(this.id);
    return this;
  }

  /** The saved value, once the trace has resolved. */
  get value(): any {
    if (this.#value === NOT_YET) {
      const { graph, id } = this;
      throw new Error(
        graph.isSaved(id)
          ? `the value of this proxy (${graph.ops[id]} at ${graph.locationOf(id)}) is available once the trace has resolved (await it)`
          : `this proxy (${graph.ops[id]} at ${graph.locationOf(id)}) was not saved: call .save() on it inside the trace, or return it from the callback`,
      );
    }
    return this.#value;
  }

  /** @internal */
  resolve(v: unknown): void {
    this.#value = v;
  }

  /** The shape, as a proxy of an int list. */
  get shape(): TraceProxy {
    return record(this.graph, this.invoke, 'shape', [this]);
  }

  size(dim?: number): TraceProxy {
    return record(this.graph, this.invoke, 'size', dim === undefined ? [this] : [this, dim]);
  }

  item(): TraceProxy {
    return record(this.graph, this.invoke, 'item', [this]);
  }

  /**
   * Runs autograd from this scalar once the forward is over (nnsight's `metric.backward()`):
   * the trace's `.grad` reads and patches run during that backward. One per invoke.
   */
  backward(): void {
    record(this.graph, this.invoke, 'backward', [this]);
  }

  /**
   * The gradient of the metric with respect to this value (a proxy, read during the backward).
   * Assigning it (`h.grad = g`), or changing it in place (`h.grad.mul_(0)`), changes the
   * gradient that flows on to earlier values.
   */
  get grad(): TraceProxy {
    return record(this.graph, this.invoke, 'grad', [this]);
  }

  set grad(v: TraceProxy | Tensor | number) {
    record(this.graph, this.invoke, 'setGrad', [this, v]);
  }

  /** Element i of a tuple-valued proxy. */
  at(i: number): TraceProxy {
    return record(this.graph, this.invoke, 'getitem', [this, i]);
  }

  /** @internal records an op on this proxy's graph: static Tensor.cat/stack with proxies in the list */
  [RECORD](op: string, args: unknown[]): TraceProxy {
    return record(this.graph, this.invoke, op, args);
  }

  toString(): string {
    return `TraceProxy(${this.graph.ops[this.id]} #${this.id})`;
  }

  get [Symbol.toStringTag](): string {
    return 'TraceProxy';
  }
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface TraceProxy extends TensorOps<TraceProxy, TraceProxy | Tensor | number> {}

// what Tensor.cat/stack rely on (markers.ts), checked here at compile time
void (TraceProxy.prototype satisfies ProxyLike);

export const isProxy = (v: unknown): v is TraceProxy => v instanceof TraceProxy;
const isValueLike = (v: unknown) => v instanceof TraceProxy || v instanceof Tensor;

/** Records one op node whose inputs are `args` (proxies, Tensors, constants). */
export function record(graph: Graph, invoke: number | undefined, op: string, args: readonly unknown[], site?: string | number): TraceProxy {
  return new TraceProxy(graph, graph.add(op, args, site, invoke), invoke);
}

function recordOp(self: TraceProxy, spec: BoundOp, raw: unknown[]): unknown {
  const rest = normalizeArgs(spec, raw, isValueLike);
  // self first (a copy by hand: unshift is a C++ builtin call)
  const args = new Array(rest.length + 1);
  args[0] = self;
  for (let i = 0; i < rest.length; i++) args[i + 1] = rest[i];
  const out = record(self.graph, self.invoke, spec.op, args);
  if (spec.inplace) return self; // in place: the same live value, now changed
  if (spec.pair && returnsPair(spec, rest)) return { values: out.at(0), indices: out.at(1) };
  return out;
}

// The walks below check leaves (proxies, Tensors, primitives) before anything else and make
// their `seen` set (against cycles) only at the first container: a trace's returned array of
// proxies costs one set, not a lookup per item.

/** What a returned value holds: a tuple view's or an array's items, a plain object's values. */
function containerItems(v: object): readonly unknown[] | undefined {
  return tupleItems(v) ?? (Array.isArray(v) ? v : Object.getPrototypeOf(v) === Object.prototype ? Object.values(v) : undefined);
}

/**
 * Touches every value in a returned value, so tuple views (which read their items on first
 * access) record their reads while the trace is still open.
 */
export function materialize(v: unknown, seen?: Set<unknown>): void {
  if (v === null || typeof v !== 'object' || v instanceof TraceProxy || v instanceof Tensor) return;
  seen ??= new Set();
  if (seen.has(v)) return;
  seen.add(v);
  const items = containerItems(v);
  if (items) for (let i = 0; i < items.length; i++) materialize(items[i], seen);
}

/** Marks every proxy in a returned value as saved. */
export function markSaved(v: unknown, seen?: Set<unknown>): void {
  if (v === null || typeof v !== 'object' || v instanceof Tensor) return;
  if (v instanceof TraceProxy) return void v.save();
  seen ??= new Set();
  if (seen.has(v)) return;
  seen.add(v);
  const items = containerItems(v);
  if (items) for (let i = 0; i < items.length; i++) markSaved(items[i], seen);
}

/** The returned value with every proxy replaced by its result. */
export function substitute(v: unknown, seen?: Map<unknown, unknown>): unknown {
  if (v === null || typeof v !== 'object' || v instanceof Tensor) return v;
  if (v instanceof TraceProxy) return v.value;
  seen ??= new Map();
  if (seen.has(v)) return seen.get(v);
  const items = tupleItems(v) ?? (Array.isArray(v) ? v : undefined);
  if (items) {
    const out: unknown[] = [];
    seen.set(v, out);
    for (let i = 0; i < items.length; i++) out.push(substitute(items[i], seen));
    return out;
  }
  if (Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    seen.set(v, out);
    for (const [k, x] of Object.entries(v)) out[k] = substitute(x, seen);
    return out;
  }
  return v;
}

/** Gives every saved proxy of the graph its value from the native results. */
export function resolveSaved(graph: Graph, saved: readonly unknown[]): void {
  graph.resolve(saved, fromNative);
}
