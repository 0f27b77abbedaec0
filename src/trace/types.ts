// Typed module trees: `LanguageModel.load<GPT2LMHeadModel>(dir)` with the `model.d.ts` the exporter
// writes next to torchsight.json gives typed envoys, so `m.transformer.h[0].mlp.output` completes
// in an editor and `m.transformer.hh` fails to compile. Types only; the envoys at run time are the
// same (src/trace/envoy.ts). Without a type argument `m` stays `any`.
//
// A module description (what python/torchsight_export/dts.py writes) is an object type:
//   type: 'GPT2Block'                    the module's class
//   inputs: ['tensor', 'tensor']         its positional tensor inputs
//   output: ['tensor', 'none']           its output
//   outputNames: ['logits']              the root only: names of the root output's items
//   children: { ln_1: LayerNorm; ... }   named submodules
//   list: GPT2Block; length: 12          a list (children 0..N-1) whose children share one class
//   children: [Linear, GELU]             a list whose children differ
// A value description is 'tensor', 'none', a tuple [a, b, ...], 'pruned' (the export pruned it),
// 'other' (not readable), or null (the module never ran in the example forward).
import type { Tensor } from '../tensor.js';
import type { TraceProxy } from './proxy.js';
import type { SourceEnvoy } from './source.js';

/** A value description: the structure of a module's input or output. */
export type ValueDesc = 'tensor' | 'none' | 'pruned' | 'other' | null | readonly ValueDesc[];

/** A module description, as model.d.ts writes them. */
export interface ModuleDesc {
  type?: string;
  inputs?: readonly ValueDesc[];
  output?: ValueDesc;
  outputNames?: readonly string[];
  children?: { readonly [name: string]: ModuleDesc } | readonly ModuleDesc[];
  list?: ModuleDesc;
  length?: number;
}

/** What may be written where a tensor is: `m.x.output = proxy | Tensor | number`. */
export type TensorWrite = TraceProxy | Tensor | number;

/** One item of a tuple value, readable as `Get` and writable with `Set` (`output[0] = v`). */
export type Item<Get, Set> = { get(): Get; set(v: Set): void };

/** A tuple output or input: items by index, `length`, iteration, array methods, `save()`. */
export type TupleValue<D extends readonly ValueDesc[], Depth extends unknown[] = []> = TupleItems<D, [...Depth, 0]> &
  ReadonlyArray<ValueOf<D[number], [...Depth, 0]>> & {
    readonly length: D['length'];
    /** Saves every item. */
    save(): TupleValue<D, Depth>;
  };

// Item i reads as ValueOf<D[i]> and accepts WriteOf<D[i]>: TypeScript gives mapped types no
// accessors, so the first eight positions are spelled out; later ones read and write one type.
export type TupleItems<D extends readonly ValueDesc[], Depth extends unknown[]> = Accessors<{
  [K in keyof D & `${number}`]: Item<ValueOf<D[K], Depth>, WriteOf<D[K], Depth>>;
}>;
export type Accessors<M> = (M extends { '0': Item<infer G, infer S> } ? { get 0(): G; set 0(v: S) } : unknown) &
  (M extends { '1': Item<infer G, infer S> } ? { get 1(): G; set 1(v: S) } : unknown) &
  (M extends { '2': Item<infer G, infer S> } ? { get 2(): G; set 2(v: S) } : unknown) &
  (M extends { '3': Item<infer G, infer S> } ? { get 3(): G; set 3(v: S) } : unknown) &
  (M extends { '4': Item<infer G, infer S> } ? { get 4(): G; set 4(v: S) } : unknown) &
  (M extends { '5': Item<infer G, infer S> } ? { get 5(): G; set 5(v: S) } : unknown) &
  (M extends { '6': Item<infer G, infer S> } ? { get 6(): G; set 6(v: S) } : unknown) &
  (M extends { '7': Item<infer G, infer S> } ? { get 7(): G; set 7(v: S) } : unknown) & {
    -readonly [K in Exclude<keyof M, '0' | '1' | '2' | '3' | '4' | '5' | '6' | '7'>]: M[K] extends Item<infer G, unknown> ? G : never;
  };

// Tuples nest a few levels at most; the depth counter keeps the recursion finite for the checker.
export type Deep<Depth extends unknown[]> = Depth['length'] extends 4 ? true : false;

/** The value of a description: a tensor is a TraceProxy, a tuple a tuple view, None null. */
export type ValueOf<D, Depth extends unknown[] = []> = D extends 'tensor'
  ? TraceProxy
  : D extends 'none'
    ? null
    : D extends readonly ValueDesc[]
      ? Deep<Depth> extends true
        ? any
        : TupleValue<D, Depth>
      : never; // 'pruned', 'other', null: reading one throws

/** What `m.x.output = v` accepts for a description. */
export type WriteOf<D, Depth extends unknown[] = []> = D extends 'tensor'
  ? TensorWrite
  : D extends 'none'
    ? null | undefined
    : D extends readonly ValueDesc[]
      ? Deep<Depth> extends true
        ? any
        : { [K in keyof D]: WriteOf<D[K], [...Depth, 0]> | null | undefined }
      : never;

/** What calling a module envoy returns: shaped like its output (tuples as plain arrays). */
export type ApplyOf<D, Depth extends unknown[] = []> = D extends 'tensor'
  ? TraceProxy
  : D extends 'none'
    ? null
    : D extends readonly ValueDesc[]
      ? Deep<Depth> extends true
        ? any
        : { -readonly [K in keyof D]: ApplyOf<D[K], [...Depth, 0]> }
      : any;

export type ValuesOf<I extends readonly ValueDesc[]> = { -readonly [K in keyof I]: ValueOf<I[K]> };
export type OutputOf<D> = D extends { output: infer O } ? O : null;
export type InputsOf<D> = D extends { inputs: infer I extends readonly ValueDesc[] } ? I : [];
export type NamedOutput<D> = D extends { outputNames: infer N extends readonly string[]; output: infer O extends readonly ValueDesc[] }
  ? { -readonly [I in keyof N & `${number}` as N[I] & string]: I extends keyof O ? ValueOf<O[I]> : never }
  : unknown;

/** The members every module envoy has: `.path`, `.type`, `.output`, `.input`, `.inputs`, `.children`, and a call. */
export interface ModuleEnvoy<D> {
  /** Applies the module to new values (where the export found a way to call it). */
  (...args: Array<TraceProxy | Tensor | number>): ApplyOf<OutputOf<D>>;
  /** The module's path, as named_modules() gives it ('' for the root). */
  readonly path: string;
  /** The module's class name. */
  readonly type: D extends { type: infer S extends string } ? S : string;
  /** The module's output (read it, or replace it: `m.x.output = 0`). */
  get output(): ValueOf<OutputOf<D>> & NamedOutput<D>;
  set output(v: WriteOf<OutputOf<D>>);
  /** The module's first positional input. */
  get input(): ValueOf<InputsOf<D>[0]>;
  set input(v: WriteOf<InputsOf<D>[0]>);
  /** All positional tensor inputs. */
  readonly inputs: ValuesOf<InputsOf<D>>;
  /** The submodules' envoys, in order. */
  readonly children: Array<EnvoysOf<ChildDescs<D>>>;
  /** The operations of the module's own forward: `source.softmax_0.output`; `String(source)` lists them. */
  readonly source: SourceEnvoy;
  /** The module does not run; its output (item 0 of a tuple) is `value`, by default its first input. */
  skip(value?: TensorWrite): void;
}

/** A list of modules (children 0..N-1): `h[0]`, `h[-1]`, `h.length`, `h.map`, `h.forEach`, `for ... of`. */
export interface ListEnvoy<E, N extends number = number> {
  readonly [index: number]: E;
  readonly length: N;
  map<U>(fn: (envoy: E, index: number, list: E[]) => U): U[];
  forEach(fn: (envoy: E, index: number, list: E[]) => void): void;
  [Symbol.iterator](): Iterator<E>;
}

// Names an envoy answers itself, so a child module of one of these names is not reachable by
// that name: the types leave it out, and envoy.ts defines no accessor for it (RESERVED below).
// `then`, `toJSON`, `constructor` and `toString` are asked of any object by await, JSON and
// printing: an envoy must never answer them with a child.
export type Reserved = 'output' | 'input' | 'inputs' | 'path' | 'length' | 'map' | 'forEach' | 'children' | 'type' | 'source' | 'skip' | 'then' | 'toJSON' | 'constructor' | 'toString';

/** Reserved at run time: a key per name, which the compiler checks are exactly Reserved's. */
export const RESERVED: { readonly [K in Reserved]: true } = {
  output: true,
  input: true,
  inputs: true,
  path: true,
  length: true,
  map: true,
  forEach: true,
  children: true,
  type: true,
  source: true,
  skip: true,
  then: true,
  toJSON: true,
  constructor: true,
  toString: true,
};

export type ChildDescs<D> = D extends { list: infer L }
  ? L
  : D extends { children: infer C }
    ? C extends readonly unknown[]
      ? C[number]
      : C[keyof C]
    : never;

export type ChildEnvoys<D> = D extends { list: infer L; length: infer N extends number }
  ? ListEnvoy<EnvoyOf<L>, N>
  : D extends { children: infer C extends readonly unknown[] }
    ? ListEnvoy<EnvoysOf<C[number]>, C['length']> & { readonly [K in keyof C & `${number}`]: EnvoyOf<C[K]> }
    : D extends { children: infer C }
      ? { readonly [K in keyof C as K extends Reserved ? never : K]: EnvoyOf<C[K]> }
      : unknown;

/**
 * The envoy type of a module description: `EnvoyOf<GPT2LMHeadModel>` has `.transformer.h[0].mlp`,
 * each with a typed `.output`, `.input`, `.inputs`. `EnvoyOf<unknown>` (no description) is `any`.
 */
export type EnvoyOf<D> = [unknown] extends [D] ? any : ModuleEnvoy<D> & ChildEnvoys<D>;

/** The envoys of a union of descriptions (the children of a list whose children differ). */
export type EnvoysOf<U> = U extends unknown ? EnvoyOf<U> : never;

/** fn's return type with proxies replaced by Tensors. */
export type Resolved<T> = T extends { save(): unknown; graph: unknown }
  ? Tensor
  : T extends ReadonlyArray<infer U>
    ? Resolved<U>[]
    : T extends object
      ? { [K in keyof T]: Resolved<T[K]> }
      : T;
