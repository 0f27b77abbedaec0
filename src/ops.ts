// The op methods shared by eager `Tensor` and in-trace proxies. Each entry names the native
// op and its parameters after `self`, in PyTorch's order; calls accept positional arguments
// or one trailing options object ({ dim, keepdim }). The native op table does the work.
import { parseIndexShared, type IndexSpec } from './indexspec.js';

export type Dim = number | number[];

/** The methods every tensor-like value has; `T` is the value type (Tensor or proxy). */
export interface TensorOps<T, Other = T | number> {
  add(other: Other, alpha?: number | { alpha?: number }): T;
  sub(other: Other, alpha?: number | { alpha?: number }): T;
  mul(other: Other): T;
  div(other: Other): T;
  pow(exponent: Other): T;
  neg(): T;
  abs(): T;
  exp(): T;
  log(): T;
  sqrt(): T;
  matmul(other: Exclude<Other, number>): T;
  mean(dim?: Dim | { dim?: Dim; keepdim?: boolean }, keepdim?: boolean): T;
  sum(dim?: Dim | { dim?: Dim; keepdim?: boolean }, keepdim?: boolean): T;
  max(): T;
  max(dim: number | { dim: number; keepdim?: boolean }, keepdim?: boolean): { values: T; indices: T };
  min(): T;
  min(dim: number | { dim: number; keepdim?: boolean }, keepdim?: boolean): { values: T; indices: T };
  norm(p?: number | { p?: number; dim?: Dim; keepdim?: boolean }, dim?: Dim, keepdim?: boolean): T;
  softmax(dim: number | { dim: number }): T;
  logSoftmax(dim: number | { dim: number }): T;
  argmax(dim?: number | { dim?: number; keepdim?: boolean }, keepdim?: boolean): T;
  topk(k: number, dim?: number | { dim?: number; largest?: boolean; sorted?: boolean }, largest?: boolean, sorted?: boolean): { values: T; indices: T };
  reshape(...shape: Array<number | number[]>): T;
  view(...shape: Array<number | number[]>): T;
  transpose(dim0: number, dim1: number): T;
  permute(...dims: Array<number | number[]>): T;
  squeeze(dim?: number): T;
  unsqueeze(dim: number): T;
  flatten(startDim?: number, endDim?: number): T;
  index(spec: IndexSpec): T;
  clone(): T;
  detach(): T;
  contiguous(): T;
  to(dtypeOrDevice: string, dtype?: string): T;
  float(): T;
  half(): T;
  bfloat16(): T;
  cosineSimilarity(other: Exclude<Other, number>, dim?: number | { dim?: number; eps?: number }, eps?: number): T;
  copy_(src: Exclude<Other, number>): T;
  add_(other: Other, alpha?: number | { alpha?: number }): T;
  sub_(other: Other, alpha?: number | { alpha?: number }): T;
  mul_(other: Other): T;
  div_(other: Other): T;
  fill_(value: number): T;
  zero_(): T;
}

export interface OpSpec {
  params: string[];
  /** shape-like varargs: reshape(2, 3) or reshape([2, 3]) */
  varargs?: boolean;
  /** result is a (values, indices) pair */
  pair?: boolean | ((args: unknown[]) => boolean);
  /** checks or converts the arguments once normalised (undefined made null, trailing nulls dropped) */
  prepare?: (args: unknown[]) => unknown[];
}

/** `alpha` is a plain number in PyTorch (the native side would reject anything else unclearly). */
function numberAlpha(op: string) {
  return (args: unknown[]): unknown[] => {
    const alpha = args[1];
    if (alpha !== undefined && alpha !== null && typeof alpha !== 'number')
      throw new Error(`${op}: argument 'alpha' must be a number; got ${Array.isArray(alpha) ? 'an array' : typeof alpha}`);
    return args;
  };
}

export const OP_SPECS: Record<string, OpSpec> = {
  add: { params: ['other', 'alpha'], prepare: numberAlpha('add') },
  sub: { params: ['other', 'alpha'], prepare: numberAlpha('sub') },
  mul: { params: ['other'] },
  div: { params: ['other'] },
  pow: { params: ['exponent'] },
  neg: { params: [] },
  abs: { params: [] },
  exp: { params: [] },
  log: { params: [] },
  sqrt: { params: [] },
  matmul: { params: ['other'] },
  mean: { params: ['dim', 'keepdim'] },
  sum: { params: ['dim', 'keepdim'] },
  max: { params: ['dim', 'keepdim'], pair: (a) => typeof a[0] === 'number' },
  min: { params: ['dim', 'keepdim'], pair: (a) => typeof a[0] === 'number' },
  norm: { params: ['p', 'dim', 'keepdim'] },
  softmax: { params: ['dim'] },
  logSoftmax: { params: ['dim'] },
  argmax: { params: ['dim', 'keepdim'] },
  topk: { params: ['k', 'dim', 'largest', 'sorted'], pair: true },
  reshape: { params: ['shape'], varargs: true },
  view: { params: ['shape'], varargs: true },
  transpose: { params: ['dim0', 'dim1'] },
  permute: { params: ['dims'], varargs: true },
  squeeze: { params: ['dim'] },
  unsqueeze: { params: ['dim'] },
  flatten: { params: ['startDim', 'endDim'] },
  index: { params: ['spec'], prepare: (a) => [parseIndexShared(a[0] as IndexSpec)] },
  clone: { params: [] },
  detach: { params: [] },
  contiguous: { params: [] },
  to: { params: ['dtypeOrDevice', 'dtype'] },
  float: { params: [] },
  half: { params: [] },
  bfloat16: { params: [] },
  cosineSimilarity: { params: ['other', 'dim', 'eps'] },
  copy_: { params: ['src'] },
  add_: { params: ['other', 'alpha'], prepare: numberAlpha('add_') },
  sub_: { params: ['other', 'alpha'], prepare: numberAlpha('sub_') },
  mul_: { params: ['other'] },
  div_: { params: ['other'] },
  fill_: { params: ['value'] },
  zero_: { params: [] },
};

const INPLACE_OPS = new Set(['copy_', 'add_', 'sub_', 'mul_', 'div_', 'fill_', 'zero_']);

/** An op as its methods see it: the spec, with its name and whether it works in place. */
export interface BoundOp extends OpSpec {
  op: string;
  inplace: boolean;
}

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
  return typeof p === 'function' ? p(args) : !!p;
}

/**
 * Installs every op of OP_SPECS on a class prototype. `call(self, spec, args)` runs it: the
 * eager Tensor calls the native op table now, a proxy records a graph node.
 */
export function installOps(proto: object, call: (self: any, op: BoundOp, args: unknown[]) => unknown): void {
  for (const [op, spec] of Object.entries(OP_SPECS)) {
    const bound: BoundOp = { ...spec, op, inplace: INPLACE_OPS.has(op) };
    Object.defineProperty(proto, op, {
      value: function (this: unknown, ...args: unknown[]) {
        return call(this, bound, args);
      },
      writable: true,
      configurable: true,
    });
  }
}
