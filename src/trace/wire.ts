// The packed form in which a graph crosses N-API: one Float64Array of words and two tables
// (strings, tensors) it points into. The native side reads it with a few N-API calls in all;
// reading node objects took ~10 property reads a node (~2 us each node, most of a small
// trace's parse). native/graph.cpp documents the layout and checks every word, since a
// graph may come from anywhere; this encoder only turns JavaScript values into words.
import { native, type NativeModel, type NativeTensor, type PackedGraph, type WireNode, type WireTrace } from '../native.js';

export const PACK_VERSION = 1;
const TAG = { null: 0, bool: 1, num: 2, str: 3, tensor: 4, ref: 5, list: 6 } as const;

const siteTables = new WeakMap<NativeModel, Map<string, number>>();

/** Site name -> the native site id, read once per model. */
export function siteIdsOf(nm: NativeModel): Map<string, number> {
  let t = siteTables.get(nm);
  if (!t) {
    t = new Map(nm.sites().map((s, i) => [s, i]));
    siteTables.set(nm, t);
  }
  return t;
}

function where(i: number, n: { op?: unknown; loc?: unknown } | undefined): string {
  return `node ${i} (${typeof n?.op === 'string' && n.op ? n.op.slice(0, 64) : '?'}${typeof n?.loc === 'string' ? ` at ${n.loc}` : ''})`;
}

// The encoder as a class: its methods are shared, so a pack makes no closures (a trace's
// JavaScript runs right after a forward, with cold caches: less code and fewer objects count).
class Packer {
  code: Float64Array;
  n = 0;
  readonly strings: string[] = [];
  readonly stringIds = new Map<string, number>();
  readonly tensors: NativeTensor[] = [];
  readonly TensorClass = native().NativeTensor;
  constructor(size: number) {
    this.code = new Float64Array(size);
  }
  push(x: number): void {
    if (this.n === this.code.length) {
      const grown = new Float64Array(this.code.length * 2);
      grown.set(this.code);
      this.code = grown;
    }
    this.code[this.n++] = x;
  }
  str(s: string): number {
    let k = this.stringIds.get(s);
    if (k === undefined) {
      k = this.strings.length;
      this.strings.push(s);
      this.stringIds.set(s, k);
    }
    return k;
  }
  int(v: unknown, dflt: number, what: string, i: number, node: WireNode): number {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number') throw new Error(`${where(i, node)}: '${what}' must be an integer`);
    return v; // range and integrality are checked natively
  }
  arg(v: unknown, i: number, node: WireNode, depth: number): void {
    if (depth > 16) throw new Error(`${where(i, node)}: argument nested too deeply`);
    if (v === null || v === undefined) this.push(TAG.null);
    else if (typeof v === 'number') {
      this.push(TAG.num);
      this.push(v);
    } else if (typeof v === 'boolean') {
      this.push(TAG.bool);
      this.push(v ? 1 : 0);
    } else if (typeof v === 'string') {
      this.push(TAG.str);
      this.push(this.str(v));
    } else if (typeof v === 'bigint') {
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new Error(`${where(i, node)}: bigint out of range`);
      this.push(TAG.num);
      this.push(Number(v));
    } else if (Array.isArray(v)) {
      if (v.length > 4096) throw new Error(`${where(i, node)}: argument list too long`);
      this.push(TAG.list);
      this.push(v.length);
      for (let k = 0; k < v.length; k++) this.arg(v[k], i, node, depth + 1);
    } else if (v instanceof this.TensorClass) {
      this.push(TAG.tensor);
      this.push(this.tensors.length);
      this.tensors.push(v as NativeTensor);
    } else if (typeof v === 'object' && typeof (v as { ref?: unknown }).ref === 'number') {
      this.push(TAG.ref);
      this.push((v as { ref: number }).ref);
    } else {
      throw new Error(`${where(i, node)}: an argument must be a number, boolean, null, string, array, Tensor or {ref: nodeId}`);
    }
  }
  node(n: WireNode, i: number, siteIds: ReadonlyMap<string, number> | undefined): void {
    if (n === null || typeof n !== 'object' || Array.isArray(n)) throw new Error(`${where(i, undefined)}: must be an object`);
    if (typeof n.op !== 'string') throw new Error(`${where(i, n)}: 'op' must be a string`);
    if (n.id !== i) throw new Error(`${where(i, n)}: ids must be 0, 1, 2, ... in order`);
    let site = -1;
    if (n.site !== undefined && n.site !== null) {
      if (typeof n.site !== 'string') throw new Error(`${where(i, n)}: 'site' must be a string`);
      site = siteIds?.get(n.site) ?? -2 - this.str(n.site);
    }
    let begin = 0;
    let end = 1;
    if (n.steps !== undefined && n.steps !== null) {
      const st = n.steps as unknown;
      if (!Array.isArray(st) || st.length !== 2 || typeof st[0] !== 'number' || typeof st[1] !== 'number')
        throw new Error(`${where(i, n)}: 'steps' must be [begin, end] (end -1 for every step)`);
      begin = st[0];
      end = st[1];
    }
    const args = n.args === undefined ? [] : n.args;
    if (!Array.isArray(args)) throw new Error(`${where(i, n)}: 'args' must be an array`);
    if (args.length > 64) throw new Error(`${where(i, n)}: too many arguments`);
    const occ = this.int(n.occ, 0, 'occ', i, n);
    const invoke = this.int(n.invoke, -1, 'invoke', i, n);
    this.push(this.str(n.op));
    this.push(site);
    this.push(occ);
    this.push(invoke);
    this.push(n.save ? 1 : 0);
    this.push(begin);
    this.push(end);
    this.push(typeof n.loc === 'string' ? this.str(n.loc.slice(0, 1024)) : -1);
    this.push(args.length);
    for (let k = 0; k < args.length; k++) this.arg(args[k], i, n, 0);
  }
}

/**
 * Packs nodes (their object form, as the tracer records them) for the native entry. Site
 * names known to `siteIds` go as ids, others by name (the native side names the missing one).
 */
export function packGraph(nodes: readonly WireNode[], siteIds?: ReadonlyMap<string, number>): PackedGraph {
  if (!Array.isArray(nodes)) throw new Error('graph: expected {traces: [], nodes: []}');
  const p = new Packer(2 + nodes.length * 14);
  p.push(PACK_VERSION);
  p.push(nodes.length);
  for (let i = 0; i < nodes.length; i++) p.node(nodes[i], i, siteIds);
  return { code: p.code.subarray(0, p.n), strings: p.strings, tensors: p.tensors };
}

/** The native request for traces and nodes in object form. */
export function wireRequest<T extends object>(nm: NativeModel, req: T & { traces: WireTrace[]; nodes: WireNode[] }) {
  const { nodes, ...rest } = req;
  return { ...rest, graph: packGraph(nodes, siteIdsOf(nm)) };
}
