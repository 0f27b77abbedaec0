// Records the intervention graph: nodes of plain data with the user's source location
// captured cheaply (a structured stack, formatted only when an error needs it).
import { basename, dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeModel, PackedGraph, WireNode, WireTrace } from '../native.js';
import { packGraph, siteIdsOf } from './wire.js';
import { Tensor } from '../tensor.js';
import { makeBatch, type Row } from '../inputs.js';

const libDir = join(dirname(fileURLToPath(import.meta.url)), '..') + sep;

/** file:line:col of the first stack frame outside torchsight itself. */
export function userLocation(stack: string | undefined): string {
  if (!stack) return 'unknown location';
  for (const line of stack.split('\n').slice(1)) {
    const m = /\(?((?:file:\/\/)?[^()\s]+):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (!m) continue;
    let file = m[1];
    if (file.startsWith('file://')) file = fileURLToPath(file);
    if (file.startsWith(libDir) || file.startsWith('node:') || file.includes(`${sep}node_modules${sep}`)) continue;
    return `${basename(file)}:${m[2]}:${m[3]}`;
  }
  return 'unknown location';
}

/** Captures the current stack without formatting it. */
export function captureStack(): { stack?: string } {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, captureStack);
  return holder;
}

// Native errors name a node by this marker (native/graph.cpp); explain() puts the line there.
const LOC = /\u0001(\d+)\u0001/g;
// read once: process.env is a slow getter, and a Graph is made for every trace
const EAGER_LOCATIONS = process.env.TORCHSIGHT_LOCATIONS === 'eager';

export interface TraceSegment {
  rows: Row[];
  invokes: [number, number][];
  begin: number;
  end: number;
  stop: boolean;
}

/** One request to the native side: one or more traces (a session) and their nodes. */
export class Graph {
  readonly nodes: WireNode[] = [];
  readonly stacks: { stack?: string }[] = [];
  readonly segments: TraceSegment[] = [];
  sealed = false;
  /** generation steps the nodes being recorded apply at ([begin, end), end -1: every step) */
  steps: [number, number] | undefined;
  values = new Map<number, unknown>();
  /** every proxy recorded, so saved ones get their value after the run */
  readonly proxies: { id: number; resolve(v: unknown): void }[] = [];

  /** replays the user's callback into a graph that captures locations (see locationOf) */
  rerecord: (() => Graph) | undefined;

  constructor(
    readonly padId: number,
    readonly captureLocations = EAGER_LOCATIONS,
  ) {}

  get current(): TraceSegment {
    const s = this.segments[this.segments.length - 1];
    if (!s) throw new Error('no trace is being recorded');
    return s;
  }

  beginTrace(): TraceSegment {
    const s: TraceSegment = { rows: [], invokes: [], begin: this.nodes.length, end: this.nodes.length, stop: false };
    this.segments.push(s);
    return s;
  }

  endTrace(): void {
    const s = this.current;
    s.end = this.nodes.length;
    if (s.rows.length === 0) throw new Error('a trace needs an input: pass one to trace(), or call tracer.invoke(input, fn)');
  }

  /** Adds a node; `args` are already in wire form. Returns its id. */
  add(op: string, args: unknown[], site?: string, invoke?: number): number {
    if (this.sealed) throw new Error(`${op}: this trace has already been sent; record operations inside the trace callback`);
    const id = this.nodes.length;
    // one shape for every node keeps the recording and packing code monomorphic
    this.nodes.push({ id, op, args, site, occ: undefined, invoke, save: false, steps: this.steps });
    if (this.captureLocations) this.stacks.push(captureStack());
    return id;
  }

  /**
   * Where node `id` was recorded. Capturing a stack costs ~4 us a node, so traces record
   * without it; when an error needs a location, `rerecord` replays the (deterministic)
   * callback into a graph that captures, and the node with the same id and op names the line.
   */
  locationOf(id: number): string {
    if (this.captureLocations) return userLocation(this.stacks[id]?.stack);
    if (this.rerecord) {
      try {
        const again = this.rerecord();
        if (again.nodes[id]?.op === this.nodes[id]?.op) return again.locationOf(id);
      } catch {
        // the replay itself failed: fall through
      }
    }
    return `node ${id} (${this.nodes[id]?.op ?? '?'}; its source line could not be recovered)`;
  }

  /** Replaces node markers in a native error message with the user's source locations. */
  explain(message: string): string {
    return message.replace(LOC, (_, id: string) => this.locationOf(Number(id)));
  }

  /** The request for the native entry: the traces' inputs and the packed nodes. */
  request(nm: NativeModel): { traces: WireTrace[]; graph: PackedGraph } {
    return { traces: this.wireTraces(), graph: packGraph(this.nodes, siteIdsOf(nm)) };
  }

  wireTraces(): WireTrace[] {
    const out: WireTrace[] = [];
    for (const s of this.segments) {
      const b = makeBatch(s.rows, this.padId);
      out.push({ batch: b.batch, seq: b.seq, ids: b.ids, mask: b.mask, pos: b.pos, invokes: s.invokes, begin: s.begin, end: s.end, stop: s.stop });
    }
    return out;
  }
}

/** Wire form of an argument: proxies become {ref}, Tensors native handles, arrays walked. */
export function wireArg(graph: Graph, v: unknown, isProxy: (v: unknown) => v is { graph: Graph; id: number }): unknown {
  if (isProxy(v)) {
    if (v.graph !== graph)
      throw new Error('a proxy from another trace was used; pass its .value (a Tensor) after that trace, or use model.session to share values');
    return { ref: v.id };
  }
  if (v instanceof Tensor) return v.native;
  if (Array.isArray(v)) return v.map((x) => wireArg(graph, x, isProxy));
  if (v === undefined) return null;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string' || v === null) return v;
  if (typeof v === 'object' && v !== null && typeof (v as { toArgs?: unknown }).toArgs === 'function')
    return wireArg(graph, (v as { toArgs(): unknown }).toArgs(), isProxy);
  throw new Error(`unsupported argument ${Object.prototype.toString.call(v)}: expected a number, a Tensor or a proxy`);
}
