// `.source` (section 12 of the API): the operations of a module's own forward, as envoys with
// `.output` and `.inputs`, and `.skip(value?)` (section 13). The native side lists the
// operations once at load (native/site_graphs.cpp: tensor-valued aten:: calls of the inlined
// forward, owned by the module on their inlined call stack); their sites are in no graph until
// a trace uses one, so reading them costs only the traces that do.
import { closest, type ModuleNode } from '../manifest.js';
import type { SourceOp } from '../native.js';
import type { Graph } from './graph.js';
import { record, TraceProxy } from './proxy.js';

export type { SourceOp };

/** What `.source` and `skip` record into: the part of an envoy scope (envoy.ts) they read. */
export interface SourceScope {
  graph: Graph | undefined;
  invoke: number;
  siteIds: ReadonlyMap<string, number>;
  ops?: () => readonly SourceOp[];
}

const INSPECT = Symbol.for('nodejs.util.inspect.custom');
const NO_ARGS: readonly unknown[] = [];

// ops by module path, indexed once per listing
const byModule = new WeakMap<readonly SourceOp[], Map<string, SourceOp[]>>();

function opsOf(scope: SourceScope, path: string): SourceOp[] {
  const all = scope.ops?.() ?? [];
  let index = byModule.get(all);
  if (!index) {
    index = new Map();
    for (const op of all) {
      let list = index.get(op.module);
      if (!list) index.set(op.module, (list = []));
      list.push(op);
    }
    byModule.set(all, index);
  }
  return index.get(path) ?? [];
}

/**
 * An op's shape with its batch and sequence dimensions named: the two probes ran [1, 3] and
 * [2, 5] tokens, so a dimension that went 1 -> 2 is the batch, 3 -> 5 the sequence, 3 -> 10
 * both flattened; one that did not change is printed as is.
 */
export function shapeText(op: SourceOp): string {
  const [a, b] = op.shapes;
  if (!a || !b || a.length !== b.length) return '';
  const dims = a.map((x, i) => {
    const y = b[i];
    if (x === y) return String(x);
    if (x === 1 && y === 2) return 'batch';
    if (x === 3 && y === 5) return 'seq';
    if (x === 3 && y === 10) return 'batch*seq';
    return '?';
  });
  return `[${dims.join(', ')}]`;
}

function graphOf(scope: SourceScope, what: string): Graph {
  if (!scope.graph) throw new Error(`${what}: envoys record only while a trace callback runs (model.trace(input, (m) => ...))`);
  return scope.graph;
}

function readSite(scope: SourceScope, site: string, what: string): TraceProxy {
  return record(graphOf(scope, what), scope.invoke, 'read', NO_ARGS, scope.siteIds.get(site) ?? site);
}

function writeSite(scope: SourceScope, site: string, what: string, value: unknown): void {
  if (Array.isArray(value) || value === undefined || value === null)
    throw new Error(`${what} is a tensor; assign a proxy, a Tensor or a number`);
  record(graphOf(scope, what), scope.invoke, 'write', [value], scope.siteIds.get(site) ?? site);
}

/** The envoy of one operation: `.output`, `.input`, `.inputs` (null where an input is not a tensor). */
export class OpEnvoy {
  readonly #scope: SourceScope;
  readonly #op: SourceOp;
  /** @internal */
  constructor(scope: SourceScope, op: SourceOp) {
    this.#scope = scope;
    this.#op = op;
  }
  /** '<module>.source.<name>' */
  get path(): string {
    return `${this.#op.module ? this.#op.module + '.' : ''}source.${this.#op.name}`;
  }
  /** the TorchScript kind, 'aten::softmax' */
  get kind(): string {
    return this.#op.kind;
  }
  /** its output's shape, batch and sequence named ('[batch, 4, seq, seq]'); '' when unknown */
  get shape(): string {
    return shapeText(this.#op);
  }
  /** the operation's result (read it, or replace it: `op.output = value`) */
  get output(): TraceProxy {
    return readSite(this.#scope, this.#op.output, `${this.path}.output`);
  }
  set output(value: unknown) {
    writeSite(this.#scope, this.#op.output, `${this.path}.output`, value);
  }
  /** its first input (a tensor) */
  get input(): TraceProxy {
    return this.#inputAt(0);
  }
  set input(value: unknown) {
    const site = this.#op.inputs[0];
    if (!site) throw new Error(`${this.path}.input: its first input is not a tensor`);
    writeSite(this.#scope, site, `${this.path}.input`, value);
  }
  /** every input by position: a proxy for a tensor, null for a dim, a dtype or another non-tensor */
  get inputs(): (TraceProxy | null)[] {
    return this.#op.inputs.map((s, k) => (s ? this.#inputAt(k) : null));
  }
  #inputAt(k: number): TraceProxy {
    const site = this.#op.inputs[k];
    if (!site) throw new Error(`${this.path}.inputs[${k}] is not a tensor`);
    return readSite(this.#scope, site, `${this.path}.inputs[${k}]`);
  }
  toString(): string {
    const shape = this.shape;
    return `${this.#op.name}: ${this.#op.kind}${shape ? ' -> ' + shape : ''}`;
  }
  [INSPECT](): string {
    return `OpEnvoy(${this.path})`;
  }
}

/** The operations of one module's forward: a property per name, a listing by `String(...)`. */
export type SourceEnvoy = { readonly [name: string]: OpEnvoy } & { toString(): string };

/** `node`'s `.source`: its ops by name; a name it lacks throws with the nearest one. */
export function sourceEnvoy(scope: SourceScope, node: ModuleNode): SourceEnvoy {
  const where = `${node.path ? node.path + '.' : ''}source`;
  const ops = opsOf(scope, node.path);
  const envoys = new Map<string, OpEnvoy>();
  for (const op of ops) envoys.set(op.name, new OpEnvoy(scope, op));
  const listing = () =>
    ops.length
      ? `${where} (${node.entry.type}, ${ops.length} operations)\n${[...envoys.values()].map((e) => '  ' + String(e)).join('\n')}`
      : `${where}: no operations${scope.ops ? '' : ' (this model lists none)'}`;
  return new Proxy(Object.create(null) as object, {
    get(_t, key) {
      if (typeof key === 'symbol') return key === Symbol.toPrimitive || key === INSPECT ? listing : undefined;
      const e = envoys.get(key);
      if (e) return e;
      switch (key) {
        case 'toString':
          return listing;
        case 'then':
        case 'toJSON':
        case 'constructor':
        case 'asymmetricMatch':
        case '$$typeof':
        case 'nodeType':
          return undefined;
      }
      const guess = closest(key, envoys.keys());
      const hint = guess ? `; did you mean '${guess}'?` : ops.length ? ` (print String(${where}) for its ${ops.length} operations)` : ': the module calls no operations of its own';
      throw new Error(`operation '${where}.${key}' not found${hint}`);
    },
    set(_t, key) {
      throw new Error(`cannot set '${String(key)}' on ${where}: replace an operation's .output or .input`);
    },
    has: (_t, key) => typeof key === 'string' && envoys.has(key),
    ownKeys: () => [...envoys.keys()],
    getOwnPropertyDescriptor: (_t, key) =>
      typeof key === 'string' && envoys.has(key) ? { value: envoys.get(key), enumerable: true, configurable: true, writable: false } : undefined,
  }) as SourceEnvoy;
}

/**
 * `envoy.skip(value?)`: the module does not run; the first item of its output (or its output,
 * when that is a tensor) is `value`, by default the module's first input. Recorded as a skip
 * node, which edits the forward's graph when the trace has one invoke, and a write of the
 * value, which patches only the invoke's rows when it has several (the module then still runs
 * for the batch: see docs/ARCHITECTURE.md).
 */
export function skipModule(scope: SourceScope, node: ModuleNode, value?: unknown): void {
  const what = `${node.path || 'model'}.skip()`;
  if (node.path === '') throw new Error(`${what}: the root module cannot be skipped (its output is the model's logits); skip one of its submodules`);
  const out = node.entry.output;
  const target = out?.kind === 'tuple' ? out.items[0] : out;
  const input = node.entry.inputs[0];
  if (!target || target.kind !== 'tensor' || !target.site)
    throw new Error(`${what}: module '${node.path}' ${out ? 'has no tensor output' : 'never ran in the exported forward'} to replace`);
  if (target.pruned) throw new Error(`${what}: the output of '${node.path}' is unused in the export, so skipping it changes nothing`);
  if (!input || input.kind !== 'tensor' || !input.site || input.pruned)
    throw new Error(`${what}: module '${node.path}' has no first tensor input to pass on`);
  if (value === undefined) {
    const same = (input.shape ?? []).join() === (target.shape ?? []).join() && input.dtype === target.dtype;
    if (!same)
      throw new Error(
        `${what}: the first input of '${node.path}' (${input.dtype} [${(input.shape ?? []).join(', ')}] in the export) cannot stand for its output ` +
          `(${target.dtype} [${(target.shape ?? []).join(', ')}]); pass the value: skip(value)`,
      );
  }
  const graph = graphOf(scope, what);
  record(graph, scope.invoke, 'skip', [target.site, input.site]);
  const v = value === undefined ? readSite(scope, input.site, what) : value;
  writeSite(scope, target.site, what, v);
}
