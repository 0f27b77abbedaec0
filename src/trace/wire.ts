// The packed form in which a graph crosses N-API: one Float64Array of words and two tables
// (strings, tensors) it points into. The native side reads it with a few N-API calls in all;
// reading node objects took ~10 property reads a node (~2 us each node, most of a small
// trace's parse). native/graph.cpp documents the layout and checks every word, since a
// graph may come from anywhere; this encoder only turns JavaScript values into words.
import { native, type NativeModel, type NativeTensor, type PackedGraph, type WireNode, type WireTrace } from '../native.js';

export const PACK_VERSION = 1;
const TAG = { null: 0, bool: 1, num: 2, str: 3, tensor: 4, ref: 5, list: 6 } as const;

export type { PackedGraph };

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

const where = (i: number, n: { op?: unknown; loc?: unknown } | undefined) =>
  `node ${i} (${typeof n?.op === 'string' && n.op ? n.op.slice(0, 64) : '?'}${typeof n?.loc === 'string' ? ` at ${n.loc}` : ''})`;

/**
 * Packs nodes (their object form, as the tracer records them) for the native entry. Site
 * names known to `siteIds` go as ids, others by name (the native side names the missing one).
 */
export function packGraph(nodes: readonly WireNode[], siteIds?: ReadonlyMap<string, number>): PackedGraph {
  if (!Array.isArray(nodes)) throw new Error('graph: expected {traces: [], nodes: []}');
  const code: number[] = [PACK_VERSION, nodes.length];
  const strings: string[] = [];
  const stringIds = new Map<string, number>();
  const tensors: NativeTensor[] = [];
  const TensorClass = native().NativeTensor;
  const str = (s: string) => {
    let k = stringIds.get(s);
    if (k === undefined) {
      k = strings.length;
      strings.push(s);
      stringIds.set(s, k);
    }
    return k;
  };
  const num = (v: unknown, dflt: number, what: string, at: () => string) => {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number') throw new Error(`${at()}: '${what}' must be an integer`);
    return v; // range and integrality are checked natively
  };
  const arg = (v: unknown, at: () => string, depth: number): void => {
    if (depth > 16) throw new Error(`${at()}: argument nested too deeply`);
    if (v === null || v === undefined) code.push(TAG.null);
    else if (typeof v === 'number') code.push(TAG.num, v);
    else if (typeof v === 'boolean') code.push(TAG.bool, v ? 1 : 0);
    else if (typeof v === 'string') code.push(TAG.str, str(v));
    else if (typeof v === 'bigint') {
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new Error(`${at()}: bigint out of range`);
      code.push(TAG.num, Number(v));
    } else if (Array.isArray(v)) {
      if (v.length > 4096) throw new Error(`${at()}: argument list too long`);
      code.push(TAG.list, v.length);
      for (const x of v) arg(x, at, depth + 1);
    } else if (v instanceof TensorClass) {
      code.push(TAG.tensor, tensors.length);
      tensors.push(v as NativeTensor);
    } else if (typeof v === 'object' && typeof (v as { ref?: unknown }).ref === 'number') {
      code.push(TAG.ref, (v as { ref: number }).ref);
    } else {
      throw new Error(`${at()}: an argument must be a number, boolean, null, string, array, Tensor or {ref: nodeId}`);
    }
  };
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i];
    const at = () => where(i, n);
    if (n === null || typeof n !== 'object' || Array.isArray(n)) throw new Error(`${where(i, undefined)}: must be an object`);
    if (typeof n.op !== 'string') throw new Error(`${at()}: 'op' must be a string`);
    if (n.id !== i) throw new Error(`${at()}: ids must be 0, 1, 2, ... in order`);
    let site = -1;
    if (n.site !== undefined && n.site !== null) {
      if (typeof n.site !== 'string') throw new Error(`${at()}: 'site' must be a string`);
      site = siteIds?.get(n.site) ?? -2 - str(n.site);
    }
    let begin = 0;
    let end = 1;
    if (n.steps !== undefined && n.steps !== null) {
      const s = n.steps as unknown;
      if (!Array.isArray(s) || s.length !== 2 || typeof s[0] !== 'number' || typeof s[1] !== 'number')
        throw new Error(`${at()}: 'steps' must be [begin, end] (end -1 for every step)`);
      [begin, end] = s;
    }
    const args = n.args === undefined ? [] : n.args;
    if (!Array.isArray(args)) throw new Error(`${at()}: 'args' must be an array`);
    if (args.length > 64) throw new Error(`${at()}: too many arguments`);
    code.push(str(n.op), site, num(n.occ, 0, 'occ', at), num(n.invoke, -1, 'invoke', at), n.save ? 1 : 0, begin, end);
    code.push(typeof n.loc === 'string' ? str(n.loc.slice(0, 1024)) : -1, args.length);
    for (const a of args) arg(a, at, 0);
  }
  return { code: Float64Array.from(code), strings, tensors };
}

/** The native request for traces and nodes in object form. */
export function wireRequest<T extends object>(nm: NativeModel, req: T & { traces: WireTrace[]; nodes: WireNode[] }) {
  const { nodes, ...rest } = req;
  return { ...rest, graph: packGraph(nodes, siteIdsOf(nm)) };
}
