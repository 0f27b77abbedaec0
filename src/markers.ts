// The symbols that mark values across layers. This module sits below both the eager Tensor
// and the tracer, so each side names what it looks for without importing the other, and no
// module has to be loaded first for its side effects.

/**
 * A tuple view's items as an array (trace/envoy.ts defines the method): returned views are
 * walked like arrays, and a view passed as an argument stands for its items.
 */
export const TUPLE_ITEMS = Symbol('torchsight.tupleItems');

/** The items of a tuple view, or undefined for anything else. */
export function tupleItems(v: unknown): unknown[] | undefined {
  return v !== null && typeof v === 'object' && TUPLE_ITEMS in v ? (v as { [TUPLE_ITEMS](): unknown[] })[TUPLE_ITEMS]() : undefined;
}

/**
 * Marks values that stand for a node of a graph (a TraceProxy, or trace/wire.ts's refTo): the
 * wire writes such an argument as a reference to its node.
 */
export const NODE_REF = Symbol('torchsight.nodeRef');

/** Marks a value inside a trace (a TraceProxy): its method records an op on its graph. */
export const RECORD = Symbol('torchsight.record');

/** What code below the tracer (the static Tensor.cat/stack) may do with a value inside a trace. */
export interface ProxyLike {
  /** Records `op(...args)` on this value's graph, in its invoke; returns the new proxy. */
  [RECORD](op: string, args: unknown[]): unknown;
}

/** Is `v` a value inside a trace? */
export function isProxyLike(v: unknown): v is ProxyLike {
  return typeof v === 'object' && v !== null && RECORD in v;
}
