// The object form of packed nodes, for tests and debugging only (never shipped: src/ must not
// import it). packGraph writes nodes given as objects with the package's encoder (PackWriter),
// unpackNodes reads packed words back as objects, wireRequest makes a native request of them.
import { PackWriter, siteIdsOf, TAG } from '../../src/trace/wire.js';
import type { NativeModel, NativeTensor, PackedGraph, WireTrace } from '../../src/native.js';

/** A node in object form: what the packed words of one node say. */
export interface WireNode {
  id: number;
  op: string;
  args: unknown[];
  site?: string;
  occ?: number;
  invoke?: number;
  loc?: string;
  save?: boolean;
  steps?: [number, number];
}

function where(i: number, n: { op?: unknown; loc?: unknown } | undefined): string {
  return `node ${i} (${typeof n?.op === 'string' && n.op ? n.op.slice(0, 64) : '?'}${typeof n?.loc === 'string' ? ` at ${n.loc}` : ''})`;
}

function nodeWords(p: PackWriter, n: WireNode, i: number, siteIds: ReadonlyMap<string, number> | undefined): void {
  if (n === null || typeof n !== 'object' || Array.isArray(n)) throw new Error(`${where(i, undefined)}: must be an object`);
  if (typeof n.op !== 'string') throw new Error(`${where(i, n)}: 'op' must be a string`);
  p.label = where(i, n);
  if (n.id !== i) throw new Error(`${p.label}: ids must be 0, 1, 2, ... in order`);
  let site = -1;
  if (n.site !== undefined && n.site !== null) {
    if (typeof n.site !== 'string') throw new Error(`${p.label}: 'site' must be a string`);
    site = siteIds?.get(n.site) ?? -2 - p.str(n.site);
  }
  let begin = 0;
  let end = 1;
  if (n.steps !== undefined && n.steps !== null) {
    const st = n.steps as unknown;
    if (!Array.isArray(st) || st.length !== 2 || typeof st[0] !== 'number' || typeof st[1] !== 'number')
      throw new Error(`${p.label}: 'steps' must be [begin, end] (end -1 for every step)`);
    begin = st[0];
    end = st[1];
  }
  const args = n.args === undefined ? [] : n.args;
  if (!Array.isArray(args)) throw new Error(`${p.label}: 'args' must be an array`);
  if (args.length > 64) throw new Error(`${p.label}: too many arguments`);
  const int = (v: unknown, dflt: number, what: string) => {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number') throw new Error(`${p.label}: '${what}' must be an integer`);
    return v; // range and integrality are checked natively
  };
  p.str(n.op); // the table lists a node's strings in the order site, op, loc
  const loc = typeof n.loc === 'string' ? p.str(n.loc.slice(0, 1024)) : -1;
  p.header(n.op, site, int(n.occ, 0, 'occ'), int(n.invoke, -1, 'invoke'), !!n.save, begin, end, loc, args.length);
  for (let k = 0; k < args.length; k++) p.arg(args[k], 0);
}

/**
 * Packs nodes (their object form, as the tracer records them) for the native entry. Site
 * names known to `siteIds` go as ids, others by name (the native side names the missing one).
 */
export function packGraph(nodes: readonly WireNode[], siteIds?: ReadonlyMap<string, number>): PackedGraph {
  if (!Array.isArray(nodes)) throw new Error('graph: expected {traces: [], nodes: []}');
  const p = new PackWriter();
  for (let i = 0; i < nodes.length; i++) nodeWords(p, nodes[i], i, siteIds);
  return p.finish(nodes.length);
}

/** The native request for traces and nodes in object form. */
export function wireRequest<T extends object>(nm: NativeModel, req: T & { traces: WireTrace[]; nodes: WireNode[] }) {
  const { nodes, ...rest } = req;
  return { ...rest, graph: packGraph(nodes, siteIdsOf(nm)) };
}

/**
 * Packed nodes (a writer's or a packed graph's) back in object form, for tests, debugging and
 * mutation. A site given by the model's id reads back by its name in `siteNames` (the model's
 * sites()), or without one.
 */
export function unpackNodes(p: { code: ArrayLike<number>; strings: readonly string[]; tensors: readonly NativeTensor[] }, siteNames?: readonly string[]): WireNode[] {
  const c = p.code;
  let i = 2;
  const arg = (): unknown => {
    const tag = c[i++];
    if (tag === TAG.null) return null;
    const x = c[i++];
    switch (tag) {
      case TAG.bool:
        return x === 1;
      case TAG.num:
        return x;
      case TAG.str:
        return p.strings[x];
      case TAG.tensor:
        return p.tensors[x];
      case TAG.ref:
        return { ref: x };
      default: {
        const items: unknown[] = [];
        for (let k = 0; k < x; k++) items.push(arg());
        return items;
      }
    }
  };
  const nodes: WireNode[] = [];
  while (i < c.length) {
    const [op, site, occ, invoke, save, begin, end, loc, nargs] = Array.prototype.slice.call(c, i, i + 9) as number[];
    i += 9;
    const args: unknown[] = [];
    for (let k = 0; k < nargs; k++) args.push(arg());
    const n: WireNode = { id: nodes.length, op: p.strings[op], args, occ, save: save === 1 };
    if (site <= -2) n.site = p.strings[-2 - site];
    else if (site >= 0 && siteNames?.[site] !== undefined) n.site = siteNames[site];
    if (invoke >= 0) n.invoke = invoke;
    if (begin !== 0 || end !== 1) n.steps = [begin, end];
    if (loc >= 0) n.loc = p.strings[loc];
    nodes.push(n);
  }
  return nodes;
}

/**
 * A recorded graph's nodes in object form, as recorded (a site recorded by name stays named;
 * one recorded by the model's id reads back by its name in `siteNames`), and its traces.
 */
export function nodesOf(g: { request(nm: NativeModel): { traces: WireTrace[]; graph: PackedGraph } }, siteNames?: readonly string[]): { traces: WireTrace[]; nodes: WireNode[] } {
  // a model without sites: request() then leaves named sites named
  const r = g.request({ sites: () => [] } as unknown as NativeModel);
  return { traces: r.traces, nodes: unpackNodes(r.graph, siteNames) };
}
