// The packed form in which a graph crosses N-API: one Float64Array of words and two tables
// (strings, tensors) it points into. The native side reads it with a few N-API calls in all;
// reading node objects took ~10 property reads a node (~2 us each node, most of a small
// trace's parse). The tracer writes a node's words as the user's call records it (Graph.add).
// native/request.cpp documents the layout and checks every word, since a graph may come from
// anywhere; this encoder only turns JavaScript values into words. (The object form of nodes,
// packGraph and unpackNodes, is for tests: tests/support/wire.ts.)
import { Tensor, TUPLE_ITEMS, isNativeTensor, tupleItems } from '../tensor.js';
import { NODE_REF } from '../markers.js';
import { type NativeModel, type NativeTensor, type PackedGraph } from '../native.js';

export const PACK_VERSION = 1;
/** The tag word before each argument's value. */
export const TAG = { null: 0, bool: 1, num: 2, str: 3, tensor: 4, ref: 5, list: 6 } as const;

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

interface NodeRef {
  readonly graph: unknown;
  readonly id: number;
}

/** A reference to node `id` of `graph`, as an argument of a node recorded into it. */
export function refTo(graph: unknown, id: number): NodeRef {
  return { [NODE_REF]: true, graph, id } as NodeRef;
}

/** The buffer of transient packed graphs (PackWriter.finish). */
let scratch = new Float64Array(1024);

/**
 * Writes packed words and the string and tensor tables they point into. The tracer writes a
 * node's words as the user's call records it (no node objects, no second pass); tests'
 * packGraph writes nodes given in object form with it. Words go to a plain array, cheap to grow on the V8 heap,
 * and are copied once into the Float64Array the native side reads.
 */
export class PackWriter {
  code: number[] = [PACK_VERSION, 0];
  readonly strings: string[] = [];
  readonly stringIds = new Map<string, number>();
  readonly tensors: NativeTensor[] = [];
  /** names the node being written in messages */
  label = '';

  /**
   * `owner`: the graph whose proxies arguments may refer to (a proxy of another is refused);
   * without one (packGraph), arguments refer to nodes as {ref: id}
   */
  constructor(readonly owner?: unknown) {}

  str(s: string): number {
    let k = this.stringIds.get(s);
    if (k === undefined) {
      k = this.strings.length;
      this.strings.push(s);
      this.stringIds.set(s, k);
    }
    return k;
  }

  /** A node's header words; returns where the node starts (its save word is start + 4). */
  header(op: string, site: number, occ: number, invoke: number, save: boolean, begin: number, end: number, loc: number, nargs: number): number {
    const c = this.code;
    const at = c.length;
    c.push(this.str(op), site, occ, invoke, save ? 1 : 0, begin, end, loc, nargs);
    return at;
  }

  arg(v: unknown, depth: number): void {
    if (depth > 16) throw new Error(`${this.label}: argument nested too deeply`);
    const c = this.code;
    if (v === null || v === undefined) c.push(TAG.null);
    else if (typeof v === 'number') c.push(TAG.num, v);
    else if (typeof v === 'object' && (v as Record<symbol, unknown>)[NODE_REF] === true) {
      if ((v as NodeRef).graph !== this.owner)
        throw new Error('a proxy from another trace was used; pass its .value (a Tensor) after that trace, or use model.session to share values');
      c.push(TAG.ref, (v as NodeRef).id);
    } else if (v instanceof Tensor) {
      c.push(TAG.tensor, this.tensors.length);
      this.tensors.push(v.handle);
    } else if (typeof v === 'boolean') c.push(TAG.bool, v ? 1 : 0);
    else if (typeof v === 'string') c.push(TAG.str, this.str(v));
    else if (Array.isArray(v)) {
      if (v.length > 4096) throw new Error(`${this.label}: argument list too long`);
      c.push(TAG.list, v.length);
      for (let k = 0; k < v.length; k++) this.arg(v[k], depth + 1);
    } else if (typeof v === 'bigint') {
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new Error(`${this.label}: bigint out of range`);
      c.push(TAG.num, Number(v));
    } else if (typeof v === 'object' && TUPLE_ITEMS in v) {
      this.arg(tupleItems(v), depth); // a tuple view: its items
    } else if (isNativeTensor(v)) {
      c.push(TAG.tensor, this.tensors.length);
      this.tensors.push(v as NativeTensor);
    } else if (this.owner === undefined && typeof v === 'object' && typeof (v as { ref?: unknown }).ref === 'number') {
      // {ref: id}: the object form's reference (a recording graph takes proxies, see refTo)
      c.push(TAG.ref, (v as { ref: number }).ref);
    } else {
      throw new Error(`${this.label}: an argument must be a number, boolean, null, string, array, Tensor or proxy; got ${Object.prototype.toString.call(v)}`);
    }
  }

  /**
   * The packed graph of `count` nodes. `transient`: its words go into a buffer the next
   * transient graph reuses, so it must be sent at once (the native side reads the words only
   * while run() parses them); a trace then allocates no new backing store for them.
   */
  finish(count: number, transient = false): PackedGraph {
    const c = this.code;
    c[1] = count;
    if (!transient) return { code: new Float64Array(c), strings: this.strings, tensors: this.tensors };
    if (scratch.length < c.length) scratch = new Float64Array(Math.max(c.length, 2 * scratch.length));
    for (let i = 0; i < c.length; i++) scratch[i] = c[i];
    return { code: new Float64Array(scratch.buffer, 0, c.length), strings: this.strings, tensors: this.tensors };
  }
}
