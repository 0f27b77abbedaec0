// The op methods shared by eager `Tensor` and in-trace proxies, installed from the declaration
// (ops.json, compiled into ops.gen.ts by scripts/gen-ops.mjs). Calls accept positional
// arguments after `self` in PyTorch's order, or one trailing options object ({ dim, keepdim }).
// The native op table checks the arguments and does the work.
import { parseIndexShared, type IndexSpec } from './indexspec.js';
import { OP_DECLS, type OpDecl } from './ops.gen.js';

export { OP_DECLS, type Dim, type OpDecl, type TensorOps } from './ops.gen.js';

/** An op as its methods see it: the declaration, its name, and the JS-side argument checks. */
export interface BoundOp extends OpDecl {
  op: string;
  /** result is a (values, indices) pair */
  pair: boolean | ((args: unknown[]) => boolean);
  /** checks or converts the arguments once normalised (undefined made null, trailing nulls dropped) */
  prepare?: (args: unknown[]) => unknown[];
}

/**
 * The JS-side checks of an op's arguments, from their kinds: `number` arguments (alpha) are
 * checked here so a trace fails at the user's line, index specs are parsed into the wire form.
 * Undefined when the op has none, so the common call makes no extra call.
 */
function prepareFor(op: string, decl: OpDecl): BoundOp['prepare'] {
  const checks = decl.js.flatMap((kind, i) => (kind ? [{ kind, i, name: decl.params[i] }] : []));
  if (checks.length === 0) return undefined;
  return (args) => {
    for (const { kind, i, name } of checks) {
      if (kind === 'index') args[i] = parseIndexShared(args[i] as IndexSpec);
      else {
        const v = args[i];
        if (v !== undefined && v !== null && typeof v !== 'number')
          throw new Error(`${op}: argument '${name}' must be a number; got ${Array.isArray(v) ? 'an array' : typeof v}`);
      }
    }
    return args;
  };
}

function bind(op: string, decl: OpDecl): BoundOp {
  const pair = decl.returns === 'pair' ? true : decl.returns === 'pairWhenDim' ? (a: unknown[]) => typeof a[0] === 'number' : false;
  return { ...decl, op, pair, prepare: prepareFor(op, decl) };
}

/** The ops installed as methods on Tensor and proxies, bound once. */
export const METHOD_OPS: readonly BoundOp[] = Object.entries(OP_DECLS)
  .filter(([, d]) => d.binding === 'method')
  .map(([op, d]) => bind(op, d));

/** A trailing options object: a plain object (a Tensor, a proxy, an array or a tuple view is an argument). */
function isOptions(x: unknown, isValue: (v: unknown) => boolean): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || isValue(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/**
 * Positional arguments (after self) in the native op's order: undefined becomes null, trailing
 * nulls go, then the op's `prepare` converts. The common call (positional, no options object)
 * makes one copy and nothing else: a trace records right after a forward, when every extra line
 * of code runs cold.
 */
export function normalizeArgs(spec: BoundOp, raw: unknown[], isValue: (v: unknown) => boolean): unknown[] {
  const { op, params } = spec;
  let src = raw;
  if (spec.varargs) {
    src = [raw.length === 1 && (Array.isArray(raw[0]) || isValue(raw[0])) ? raw[0] : raw];
  } else {
    const last = raw.length > 0 ? raw[raw.length - 1] : undefined;
    if (last !== undefined && isOptions(last, isValue)) {
      src = raw.slice(0, -1);
      for (const [k, v] of Object.entries(last)) {
        const i = params.indexOf(k);
        if (i < 0) throw new Error(`${op}: unknown option '${k}' (options: ${params.join(', ') || 'none'})`);
        if (i < src.length && src[i] !== undefined) throw new Error(`${op}: '${k}' given twice`);
        while (src.length <= i) src.push(undefined);
        src[i] = v;
      }
    }
    if (src.length > params.length) throw new Error(`${op}: expected at most ${params.length} argument(s) (${params.join(', ') || 'none'}), got ${src.length}`);
  }
  let n = src.length;
  while (n > 0 && (src[n - 1] === undefined || src[n - 1] === null)) n--;
  const args = new Array(n);
  for (let i = 0; i < n; i++) args[i] = src[i] === undefined ? null : src[i];
  return spec.prepare ? spec.prepare(args) : args;
}

export function returnsPair(spec: BoundOp, args: unknown[]): boolean {
  const p = spec.pair;
  return typeof p === 'function' ? p(args) : p;
}

/**
 * Installs every method op on a class prototype. `call(self, spec, args)` runs it: the eager
 * Tensor calls the native op table now, a proxy records a graph node.
 */
export function installOps(proto: object, call: (self: any, op: BoundOp, args: unknown[]) => unknown): void {
  for (const bound of METHOD_OPS) {
    Object.defineProperty(proto, bound.op, {
      value: function (this: unknown, ...args: unknown[]) {
        return call(this, bound, args);
      },
      writable: true,
      configurable: true,
    });
  }
}
