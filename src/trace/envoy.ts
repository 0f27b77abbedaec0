// Envoys: `m.transformer.h[8].mlp` inside a trace. Each stands for one module of the
// manifest's tree and hands out proxies for its inputs and outputs, shaped like the eager
// module's (a tuple output indexes like Python's). Calling one applies the module.
import { closest, type Manifest, type ModuleNode, type Struct } from '../manifest.js';
import type { Graph } from './graph.js';
import { TUPLE_ITEMS } from '../tensor.js';
import { record, TraceProxy } from './proxy.js';
import { RESERVED } from './types.js';
import { aliasesOf } from './rename.js';
import { skipModule, sourceEnvoy, type SourceEnvoy, type SourceOp } from './source.js';

/**
 * What envoys record into: one per model, its graph and invoke set while a trace callback runs
 * (so envoys are made once per module and kept, like nnsight's, and record into whichever trace
 * and invoke is open when they are used).
 */
export interface Scope {
  graph: Graph | undefined;
  invoke: number;
  manifest: Manifest;
  byPath: Map<string, ModuleNode>;
  envoys: Map<ModuleNode, Envoy>;
  /** the model's native site ids: reads and writes record a site by id, not by name */
  siteIds: ReadonlyMap<string, number>;
  /** the operations of every module's forward (`.source`), as the model that runs the graphs lists them */
  ops?: () => readonly SourceOp[];
}

function graphOf(scope: Scope, what: string): Graph {
  if (!scope.graph) throw new Error(`${what}: envoys record only while a trace callback runs (model.trace(input, (m) => ...))`);
  return scope.graph;
}

/** The envoy of `node`, made on first use. */
export function envoyOf(scope: Scope, node: ModuleNode): Envoy {
  let e = scope.envoys.get(node);
  if (!e) {
    e = makeEnvoy(scope, node);
    scope.envoys.set(node, e);
  }
  return e;
}

const RESERVED_NAMES: ReadonlySet<string> = new Set(Object.keys(RESERVED));

const NO_ARGS: readonly unknown[] = [];
// console.log and util.inspect print an envoy or a tuple view by this, not by reading its names
const INSPECT = Symbol.for('nodejs.util.inspect.custom');

/** A site as reads and writes record it: the model's native id, or the name it lacks (the native side names it). */
function siteOf(scope: Scope, site: string): string | number {
  return scope.siteIds.get(site) ?? site;
}

function leafValue(scope: Scope, s: Struct, what: string): TraceProxy {
  if (s.kind !== 'tensor') throw new Error(`${what} is not a tensor`);
  if (!s.site) throw new Error(`${what} has no hook site in this export`);
  if (s.pruned)
    throw new Error(`${what} ('${s.site}') was pruned by the export: nothing in the model uses it, so it cannot be read or patched`);
  return record(graphOf(scope, what), scope.invoke, 'read', NO_ARGS, siteOf(scope, s.site));
}

function writeLeaf(scope: Scope, s: Struct, what: string, value: unknown): void {
  if (s.kind !== 'tensor' || !s.site) throw new Error(`${what} is not a tensor with a hook site; it cannot be replaced`);
  if (s.pruned) throw new Error(`${what} ('${s.site}') was pruned by the export: replacing it would change nothing`);
  if (value instanceof Array || value instanceof TupleView)
    throw new Error(`${what} is a tensor; assign a proxy, a Tensor or a number`);
  record(graphOf(scope, what), scope.invoke, 'write', [value], siteOf(scope, s.site));
}

/** The value of a struct: a proxy for a tensor, a tuple view for a tuple, null for None. */
export function structValue(scope: Scope, s: Struct | null | undefined, what: string, names: readonly string[] = []): unknown {
  if (!s) throw new Error(`${what} does not exist: the module never ran in the exported forward`);
  switch (s.kind) {
    case 'tensor':
      return leafValue(scope, s, what);
    case 'tuple':
      return tupleView(scope, s.items, what, names);
    case 'none':
      return null;
    default:
      throw new Error(`${what} is a ${s.type ?? 'non-tensor value'}, which torchsight cannot read`);
  }
}

export function writeStruct(scope: Scope, s: Struct | null | undefined, what: string, value: unknown): void {
  if (!s) throw new Error(`${what} does not exist: the module never ran in the exported forward`);
  if (s.kind === 'tensor') return writeLeaf(scope, s, what, value);
  if (s.kind === 'tuple') {
    // a tuple view's items are read only where they are written (a None target skips its item)
    const at = Array.isArray(value) ? (i: number) => value[i] : value instanceof TupleView ? (i: number) => value.item(i) : null;
    const n = Array.isArray(value) || value instanceof TupleView ? value.length : -1;
    if (!at || n !== s.items.length)
      throw new Error(`${what} is a tuple of ${s.items.length}; assign an array of ${s.items.length} values (null leaves a None as is)`);
    s.items.forEach((item, i) => {
      if (item.kind === 'none') return;
      const v = at(i);
      if (v === null || v === undefined) return;
      writeStruct(scope, item, `${what}[${i}]`, v);
    });
    return;
  }
  throw new Error(`${what} cannot be replaced`);
}

/**
 * A tuple value: `output[0]`, `output[-1]`, `output.logits`, `output.length`, `output[0] = v`,
 * iteration, `save()`, and Array's methods. Items are accessors on a class made once per
 * arity and names (no Proxy on the path a trace takes); reading one records its node once
 * per view. A view keeps the trace and invoke it was made in: a returned view reads its items
 * after the callback, when the model's scope has moved on.
 */
class TupleView {
  readonly #scope: Scope;
  readonly #items: Struct[];
  readonly #what: string;
  readonly #cache: unknown[] = [];

  /** @internal */
  constructor(scope: Scope, items: Struct[], what: string) {
    this.#scope = { graph: scope.graph, invoke: scope.invoke, manifest: scope.manifest, byPath: scope.byPath, envoys: scope.envoys, siteIds: scope.siteIds };
    this.#items = items;
    this.#what = what;
  }

  get length(): number {
    return this.#items.length;
  }

  set length(_n: number) {
    throw TupleView.cannotSet(this, 'length');
  }

  /** Saves every item. */
  save(): this {
    for (let k = 0; k < this.#items.length; k++) {
      const v = this.item(k);
      if (v instanceof TraceProxy || v instanceof TupleView) v.save();
    }
    return this;
  }

  /** Reads items as the iteration reaches them (`const [h] = block.output` reads item 0 only). */
  *[Symbol.iterator](): Iterator<unknown> {
    for (let k = 0; k < this.#items.length; k++) yield this.item(k);
  }

  /** The items as an array (reading each). */
  toArray(): unknown[] {
    const out = new Array(this.#items.length);
    for (let k = 0; k < out.length; k++) out[k] = this.item(k);
    return out;
  }

  /** @internal */
  [TUPLE_ITEMS](): unknown[] {
    return this.toArray();
  }

  /** @internal item i's value (its node is recorded on the first read) */
  item(i: number): unknown {
    let v = this.#cache[i];
    // undefined: not read yet (a None item reads as null each time, which records nothing)
    if (v === undefined) v = this.#cache[i] = structValue(this.#scope, this.#items[i], `${this.#what}[${i}]`);
    return v;
  }

  /** @internal */
  setItem(i: number, value: unknown): void {
    writeStruct(this.#scope, this.#items[i], `${this.#what}[${i}]`, value);
    this.#cache[i] = undefined;
  }

  /** @internal names index `i` in a message */
  static outOfRange(v: TupleView, i: number): Error {
    return new Error(`${v.#what}[${i}]: index out of range for a tuple of ${v.#items.length}`);
  }

  /** @internal */
  static cannotSet(v: TupleView, key: string | symbol): Error {
    return new Error(`${v.#what}: cannot set '${String(key)}'`);
  }

  toString(): string {
    return `TupleView(${this.#what})`;
  }

  [INSPECT](): string {
    return this.toString();
  }
}

/** An integer-like key ('3', '-1') as a number, else undefined. */
function intKey(key: string | symbol): number | undefined {
  if (typeof key !== 'string') return undefined;
  const i = Number(key);
  return key !== '' && Number.isInteger(i) && String(i) === key ? i : undefined;
}

// What a view's own class does not define ends here: an index out of range throws, Array's
// methods run on the items, anything else is undefined (as on an array).
Object.setPrototypeOf(
  TupleView.prototype,
  new Proxy(Object.create(null) as object, {
    get(_t, key, receiver: TupleView) {
      const i = intKey(key);
      if (i !== undefined) throw TupleView.outOfRange(receiver, i);
      if (typeof key === 'string' && key in Array.prototype) {
        const arr = receiver.toArray();
        const v = (arr as unknown as Record<string, unknown>)[key];
        return typeof v === 'function' ? v.bind(arr) : v;
      }
      return undefined;
    },
    set(_t, key, _v, receiver: TupleView) {
      const i = intKey(key);
      throw i !== undefined ? TupleView.outOfRange(receiver, i) : TupleView.cannotSet(receiver, key);
    },
    has: () => false,
  }),
);

// One subclass per arity and item names: its prototype has an accessor for each index (and
// negative index, and name), so `output[0]` is a plain getter call.
type ViewClass = new (scope: Scope, items: Struct[], what: string) => TupleView;
const viewClasses = new Map<string, ViewClass>();
// by a struct's items array too, so reading `.output` makes no key string
const viewClassOf = new WeakMap<readonly Struct[], ViewClass>();

function viewClass(n: number, names: readonly string[]): ViewClass {
  const key = `${n}|${names.join('|')}`;
  let C = viewClasses.get(key);
  if (!C) {
    C = class extends TupleView {};
    for (let k = 0; k < n; k++) {
      const acc = {
        get(this: TupleView) {
          return this.item(k);
        },
        set(this: TupleView, v: unknown) {
          this.setItem(k, v);
        },
        configurable: true,
      };
      Object.defineProperty(C.prototype, String(k), { ...acc, enumerable: true });
      Object.defineProperty(C.prototype, String(k - n), acc);
      if (k < names.length && names[k] && intKey(names[k]) === undefined && !(names[k] in TupleView.prototype)) Object.defineProperty(C.prototype, names[k], acc);
    }
    viewClasses.set(key, C);
  }
  return C;
}

/** An array-like view of a tuple: `output[0]`, `output.length`, `output[0] = v`. */
function tupleView(scope: Scope, items: Struct[], what: string, names: readonly string[]): TupleView {
  let C = names.length ? undefined : viewClassOf.get(items);
  if (!C) {
    C = viewClass(items.length, names);
    if (!names.length) viewClassOf.set(items, C);
  }
  return new C(scope, items, what);
}

/** The result of applying a module, shaped like its eager output. */
function applyResult(scope: Scope, node: ModuleNode, out: TraceProxy): unknown {
  const s = node.entry.output;
  if (!s || s.kind === 'tensor') return out;
  if (node.entry.apply.outputFlattened) {
    let leaves = 0;
    const count = (x: Struct): void => {
      if (x.kind === 'tensor') leaves++;
      else if (x.kind === 'tuple') x.items.forEach(count);
    };
    count(s);
    let k = 0;
    const build = (x: Struct): unknown => {
      if (x.kind === 'tensor') return leaves === 1 ? out : out.at(k++);
      if (x.kind === 'tuple') return x.items.map(build);
      return null;
    };
    return build(s);
  }
  const build = (x: Struct, p: TraceProxy): unknown => (x.kind === 'tuple' ? x.items.map((it, i) => build(it, p.at(i))) : x.kind === 'none' ? null : p);
  return build(s, out);
}

function notFound(node: ModuleNode, name: string): Error {
  const full = node.path ? `${node.path}.${name}` : name;
  const guess = closest(name, [...node.children.keys()]);
  const hint = guess ? `; did you mean '${node.path ? node.path + '.' : ''}${guess}'?` : node.children.size ? ` (children: ${[...node.children.keys()].slice(0, 12).join(', ')})` : ' (it has no submodules)';
  return new Error(`module '${full}' not found${hint}`);
}

export type Envoy = any;

const NODE = Symbol('torchsight.envoyNode');
type EnvoyFn = ((...args: unknown[]) => unknown) & { [NODE]: ModuleNode };

// An envoy is a function (calling it applies the module) with its own properties for what a
// module has: children (accessors that make the child's envoy once), output/input accessors,
// path, type, and a list's length, negative indices and map/forEach. A name it does not have
// ends in this Proxy at the end of its prototype chain, which names the missing module; the
// names it has never reach a Proxy trap.
const envoyMiss = new Proxy(Object.create(null) as object, {
  get(_t, key, receiver: EnvoyFn) {
    // read on this Proxy itself (not through an envoy), nothing is an envoy's
    const node = Object.prototype.hasOwnProperty.call(receiver, NODE) ? receiver[NODE] : undefined;
    if (!node) return undefined;
    if (typeof key === 'symbol') return key === Symbol.toPrimitive || key === INSPECT ? () => `Envoy(${node.path})` : undefined;
    switch (key) {
      case 'then':
      case 'toJSON':
      case 'constructor':
      case 'asymmetricMatch':
      case '$$typeof':
      case 'nodeType':
      case 'length':
        return undefined;
      case 'toString':
        return () => `Envoy(${node.path})`;
    }
    throw notFound(node, key);
  },
  set(_t, key, _v, receiver: EnvoyFn) {
    if (!Object.prototype.hasOwnProperty.call(receiver, NODE)) return false;
    throw cannotSet(receiver[NODE], key);
  },
  has: () => false,
});

function cannotSet(node: ModuleNode, key: string | symbol): Error {
  return new Error(`cannot set '${String(key)}' on module '${node.path}': only .output and .input can be replaced`);
}

// not configurable: envoys live as long as the model, so a `delete` must not break later traces
function define(e: object, key: string | symbol, desc: PropertyDescriptor): void {
  Object.defineProperty(e, key, { enumerable: false, configurable: false, ...desc });
}

/** The envoy of a module: a function with a property for each child, output and input. */
function makeEnvoy(scope: Scope, node: ModuleNode): Envoy {
  const rootNames = node.path === '' ? scope.manifest.outputNames : [];
  const outWhat = `${node.path || 'model'}.output`;
  const inWhat = `${node.path || 'model'}.input`;
  const call = (...args: unknown[]) => {
    const rule = node.entry.apply;
    if (!rule || rule.kind === 'none')
      throw new Error(`module '${node.path}' (${node.entry.type}) cannot be applied: ${rule?.reason ?? 'the export found no way to call it on new values'}`);
    if (args.length === 0) throw new Error(`module '${node.path}' needs at least one input`);
    const out = record(graphOf(scope, `module '${node.path}'`), scope.invoke, 'apply', [node.path, ...args]);
    return applyResult(scope, node, out);
  };
  const e = call as unknown as EnvoyFn;
  // a function's own name and length are not a module's
  delete (e as { name?: unknown }).name;
  delete (e as { length?: unknown }).length;
  Object.setPrototypeOf(e, envoyMiss);
  define(e, NODE, { value: node });
  const readOnly = (key: string) => () => {
    throw cannotSet(node, key);
  };
  const child = (key: string, c: ModuleNode) => {
    let v: Envoy;
    define(e, key, { enumerable: true, get: () => (v ??= envoyOf(scope, c)), set: readOnly(key) });
  };
  for (const [key, c] of node.children) if (!RESERVED_NAMES.has(key)) child(key, c);
  for (const [key, c] of aliasesOf(node)) child(key, c); // rename's aliases (trace/rename.ts)
  define(e, 'output', {
    get: () => structValue(scope, node.entry.output, outWhat, rootNames),
    set: (value: unknown) => writeStruct(scope, node.entry.output, outWhat, value),
  });
  define(e, 'input', {
    get: () => {
      if (!node.entry.inputs.length) throw new Error(`${inWhat}: the module takes no positional tensor input${node.entry.calls ? '' : ' (it never ran)'}`);
      return structValue(scope, node.entry.inputs[0], inWhat);
    },
    set: (value: unknown) => {
      if (!node.entry.inputs.length) throw new Error(`${inWhat}: the module has no positional tensor input`);
      writeStruct(scope, node.entry.inputs[0], inWhat, value);
    },
  });
  define(e, 'inputs', { get: () => node.entry.inputs.map((s, i) => structValue(scope, s, `${node.path || 'model'}.inputs[${i}]`)), set: readOnly('inputs') });
  let source: SourceEnvoy | undefined;
  define(e, 'source', { get: () => (source ??= sourceEnvoy(scope, node)), set: readOnly('source') });
  define(e, 'skip', { value: (value?: unknown) => skipModule(scope, node, value) });
  define(e, 'path', { get: () => node.path, set: readOnly('path') });
  define(e, 'type', { get: () => node.entry.type, set: readOnly('type') });
  let list: Envoy[] | undefined;
  const envoys = () => (list ??= node.list.map((c) => envoyOf(scope, c)));
  define(e, 'children', { get: () => [...envoys()], set: readOnly('children') });
  if (node.isList) {
    define(e, 'length', { get: () => node.children.size, set: readOnly('length') });
    for (let i = 1; i <= node.list.length; i++) child(String(-i), node.list[node.list.length - i]);
    define(e, 'map', { get: () => envoys().map.bind(envoys()), set: readOnly('map') });
    define(e, 'forEach', { get: () => envoys().forEach.bind(envoys()), set: readOnly('forEach') });
    define(e, Symbol.iterator, { value: () => envoys()[Symbol.iterator]() });
  }
  return e;
}
