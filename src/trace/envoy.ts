// Envoys: `m.transformer.h[8].mlp` inside a trace. Each stands for one module of the
// manifest's tree and hands out proxies for its inputs and outputs, shaped like the eager
// module's (a tuple output indexes like Python's). Calling one applies the module.
import { closest, type Manifest, type ModuleNode, type Struct } from '../manifest.js';
import type { Graph } from './graph.js';
import { record, TraceProxy } from './proxy.js';

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

const RESERVED = new Set(['output', 'input', 'inputs', 'path', 'length', 'map', 'forEach', 'children', 'type']);

function leafValue(scope: Scope, s: Struct, what: string): TraceProxy {
  if (s.kind !== 'tensor') throw new Error(`${what} is not a tensor`);
  if (!s.site) throw new Error(`${what} has no hook site in this export`);
  if (s.pruned)
    throw new Error(`${what} ('${s.site}') was pruned by the export: nothing in the model uses it, so it cannot be read or patched`);
  return record(graphOf(scope, what), scope.invoke, 'read', [], s.site);
}

function writeLeaf(scope: Scope, s: Struct, what: string, value: unknown): void {
  if (s.kind !== 'tensor' || !s.site) throw new Error(`${what} is not a tensor with a hook site; it cannot be replaced`);
  if (s.pruned) throw new Error(`${what} ('${s.site}') was pruned by the export: replacing it would change nothing`);
  if (value instanceof Array || (value !== null && typeof value === 'object' && TUPLE in (value as object)))
    throw new Error(`${what} is a tensor; assign a proxy, a Tensor or a number`);
  record(graphOf(scope, what), scope.invoke, 'write', [value], s.site);
}

const TUPLE = Symbol('tuple');

/** The value of a struct: a proxy for a tensor, a tuple view for a tuple, null for None. */
export function structValue(scope: Scope, s: Struct | null | undefined, what: string, names: string[] = []): unknown {
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
    const items = Array.isArray(value) ? value : null;
    if (!items || items.length !== s.items.length)
      throw new Error(`${what} is a tuple of ${s.items.length}; assign an array of ${s.items.length} values (null leaves a None as is)`);
    s.items.forEach((item, i) => {
      if (item.kind === 'none' || items[i] === null || items[i] === undefined) return;
      writeStruct(scope, item, `${what}[${i}]`, items[i]);
    });
    return;
  }
  throw new Error(`${what} cannot be replaced`);
}

interface TupleState {
  scope: Scope;
  items: Struct[];
  what: string;
  names: string[];
  cache: unknown[]; // item values read so far (a read records a node once per view)
}
const STATE = Symbol('tuple state');

/** `key` as an item index of the tuple, or undefined. */
function itemIndex(st: TupleState, key: string): number | undefined {
  const c = key.charCodeAt(0);
  if ((c >= 48 && c <= 57) || (c === 45 && key.length > 1)) {
    const i = Number(key);
    if (Number.isInteger(i) && String(i) === key) {
      const j = i < 0 ? i + st.items.length : i;
      if (j < 0 || j >= st.items.length) throw new Error(`${st.what}[${i}]: index out of range for a tuple of ${st.items.length}`);
      return j;
    }
  }
  const n = st.names.indexOf(key);
  return n >= 0 ? n : undefined;
}

function itemValue(st: TupleState, i: number): unknown {
  if (!(i in st.cache)) st.cache[i] = structValue(st.scope, st.items[i], `${st.what}[${i}]`);
  return st.cache[i];
}

// one handler for every tuple view (each view's state lives on its target)
const tupleHandler: ProxyHandler<unknown[]> = {
  get(t, key, receiver) {
    if (key === TUPLE) return true;
    const st = (t as unknown as Record<symbol, TupleState>)[STATE];
    if (typeof key === 'string') {
      const i = itemIndex(st, key);
      if (i !== undefined) return itemValue(st, i);
      if (key === 'length') return st.items.length;
      if (key === 'save')
        return () => {
          st.items.forEach((_, k) => {
            const v = itemValue(st, k);
            if (v instanceof TraceProxy) v.save();
            else if (v && typeof v === 'object' && 'save' in v) (v as { save(): void }).save();
          });
          return receiver;
        };
    }
    if (key === Symbol.iterator) return function* () { for (let k = 0; k < st.items.length; k++) yield itemValue(st, k); };
    if (typeof key === 'string' && key in Array.prototype) {
      const arr = st.items.map((_, k) => itemValue(st, k));
      const v = (arr as unknown as Record<string, unknown>)[key];
      return typeof v === 'function' ? v.bind(arr) : v;
    }
    return Reflect.get(t, key);
  },
  set(t, key, value) {
    const st = (t as unknown as Record<symbol, TupleState>)[STATE];
    const i = typeof key === 'string' ? itemIndex(st, key) : undefined;
    if (i === undefined) throw new Error(`${st.what}: cannot set '${String(key)}'`);
    writeStruct(st.scope, st.items[i], `${st.what}[${i}]`, value);
    delete st.cache[i];
    return true;
  },
  has(t, key) {
    const st = (t as unknown as Record<symbol, TupleState>)[STATE];
    return typeof key === 'string' && (itemIndex(st, key) !== undefined || key === 'length');
  },
  ownKeys(t) {
    const st = (t as unknown as Record<symbol, TupleState>)[STATE];
    return [...st.items.map((_, k) => String(k)), 'length'];
  },
  getOwnPropertyDescriptor(t, key) {
    const st = (t as unknown as Record<symbol, TupleState>)[STATE];
    if (key === 'length') return { value: st.items.length, writable: true, enumerable: false, configurable: false };
    const i = typeof key === 'string' ? itemIndex(st, key) : undefined;
    return i === undefined ? undefined : { value: itemValue(st, i), writable: true, enumerable: true, configurable: true };
  },
};

/** An array-like view of a tuple: `output[0]`, `output.length`, `output[0] = v`. */
function tupleView(scope: Scope, items: Struct[], what: string, names: string[]): unknown[] {
  const target = [] as unknown as unknown[] & { [STATE]: TupleState };
  // the view belongs to the trace it was made in (a returned view reads its items after the
  // callback, when the model's scope has moved on)
  target[STATE] = { scope: { ...scope }, items, what, names, cache: [] };
  return new Proxy(target, tupleHandler);
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

/** The envoy of a module: a callable proxy that resolves children, outputs and inputs. */
function makeEnvoy(scope: Scope, node: ModuleNode): Envoy {
  let list: Envoy[] | undefined;
  const envoys = () => (list ??= node.list.map((c) => envoyOf(scope, c)));
  const what = (x: string) => `${node.path || 'model'}.${x}`;
  const child = (key: string): ModuleNode | undefined => {
    if (node.children.has(key)) return node.children.get(key);
    if (/^-\d+$/.test(key) && node.isList) {
      const i = Number(key) + node.children.size;
      return i >= 0 ? node.list[i] : undefined;
    }
    return undefined;
  };
  const call = (...args: unknown[]) => {
    const rule = node.entry.apply;
    if (!rule || rule.kind === 'none')
      throw new Error(`module '${node.path}' (${node.entry.type}) cannot be applied: ${rule?.reason ?? 'the export found no way to call it on new values'}`);
    if (args.length === 0) throw new Error(`module '${node.path}' needs at least one input`);
    const out = record(graphOf(scope, `module '${node.path}'`), scope.invoke, 'apply', [node.path, ...args]);
    return applyResult(scope, node, out);
  };
  return new Proxy(call, {
    get(_t, key) {
      if (typeof key === 'symbol') {
        if (key === Symbol.iterator && node.isList) return function* () { yield* envoys(); };
        if (key === Symbol.toPrimitive) return () => `Envoy(${node.path})`;
        return undefined;
      }
      const c = RESERVED.has(key) ? undefined : child(key);
      if (c) return envoyOf(scope, c);
      switch (key) {
        case 'path':
          return node.path;
        case 'type':
          return node.entry.type;
        case 'output':
          return structValue(scope, node.entry.output, `${node.path || 'model'}.output`, node.path === '' ? scope.manifest.outputNames : []);
        case 'input':
          if (!node.entry.inputs.length) throw new Error(`${what('input')}: the module takes no positional tensor input${node.entry.calls ? '' : ' (it never ran)'}`);
          return structValue(scope, node.entry.inputs[0], `${node.path || 'model'}.input`);
        case 'inputs':
          return node.entry.inputs.map((s, i) => structValue(scope, s, `${node.path || 'model'}.inputs[${i}]`));
        case 'length':
          return node.isList ? node.children.size : undefined;
        case 'children':
          return [...envoys()];
        case 'map':
        case 'forEach':
          if (node.isList) {
            const l = envoys();
            return (l[key] as (...a: unknown[]) => unknown).bind(l);
          }
          break;
        case 'then':
        case 'toJSON':
        case 'constructor':
        case 'asymmetricMatch':
        case '$$typeof':
        case 'nodeType':
          return undefined;
        case 'toString':
          return () => `Envoy(${node.path})`;
      }
      throw notFound(node, key);
    },
    set(_t, key, value) {
      if (key === 'output') {
        writeStruct(scope, node.entry.output, `${node.path || 'model'}.output`, value);
        return true;
      }
      if (key === 'input') {
        if (!node.entry.inputs.length) throw new Error(`${what('input')}: the module has no positional tensor input`);
        writeStruct(scope, node.entry.inputs[0], `${node.path || 'model'}.input`, value);
        return true;
      }
      throw new Error(`cannot set '${String(key)}' on module '${node.path}': only .output and .input can be replaced`);
    },
    has(_t, key) {
      return typeof key === 'string' && (child(key) !== undefined || RESERVED.has(key));
    },
  });
}
