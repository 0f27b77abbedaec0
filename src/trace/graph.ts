// Records the intervention graph: each node written as packed words of plain data (wire.ts) as
// the user's call records it, the source location found only when an error needs it (by
// replaying the callback, or from a structured stack under TORCHSIGHT_LOCATIONS=eager).
// A Graph is closed: the tracer, sessions, generation and doctor change it only through its
// methods, so what a request holds is decided here.
import { basename, dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeModel, PackedGraph, WireTrace } from '../native.js';
import { PackWriter, siteIdsOf } from './wire.js';
import { makeBatch, type Row } from '../inputs.js';
import { eagerLocations } from '../settings.js';

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

// Native errors name a node by this marker (native/request.cpp); explain() puts the line there.
const LOC = /\u0001(\d+)\u0001/g;
// read once, at the first graph: process.env is a slow getter, and a Graph is made for every trace
let EAGER_LOCATIONS: boolean | undefined;

/** One trace of a request: its rows (the invokes' inputs, batched) and its nodes' range. */
interface TraceSegment {
  rows: Row[];
  invokes: [number, number][];
  begin: number;
  end: number;
  stop: boolean;
}

/** What a saved node's value is handed to after the run (a TraceProxy). */
export interface Resolvable {
  resolve(v: unknown): void;
}

/** One request to the native side: one or more traces (a session) and their nodes. */
export class Graph {
  /** the packed nodes, written as they are recorded (wire.ts) */
  readonly #w: PackWriter = new PackWriter(this);
  /** each node's op (for messages) and its first word */
  readonly #ops: string[] = [];
  readonly #starts: number[] = [];
  readonly #stacks: { stack?: string }[] = [];
  readonly #segments: TraceSegment[] = [];
  readonly #proxies: (Resolvable | undefined)[] = [];
  #sealed = false;
  /** generation steps the nodes being recorded apply at ([begin, end), end -1: every step) */
  #steps: [number, number] | undefined;
  /** whether some site was recorded by name (request() then looks its id up) */
  #named = false;
  /** replays the user's callback into a graph that captures locations (see locationOf) */
  #replay: (() => Graph) | undefined;
  readonly padId: number;
  readonly captureLocations: boolean;

  constructor(padId: number, captureLocations?: boolean) {
    this.padId = padId;
    this.captureLocations = captureLocations ?? (EAGER_LOCATIONS ??= eagerLocations());
  }

  /** how many nodes are recorded */
  get size(): number {
    return this.#ops.length;
  }

  /** each node's op, by id (for messages) */
  get ops(): readonly string[] {
    return this.#ops;
  }

  /** Records `p` as the proxy of node `id`: it gets the node's value if the node is saved. */
  bindProxy(id: number, p: Resolvable): void {
    this.#proxies[id] = p;
  }

  /** Hands each saved node's value to its proxy (`values`: node id, value, node id, value, ...). */
  resolve(values: readonly unknown[], convert: (v: unknown) => unknown = (v) => v): void {
    for (let i = 0; i + 1 < values.length; i += 2) this.#proxies[values[i] as number]?.resolve(convert(values[i + 1]));
  }

  /** Whether the graph was sent: nothing more may be recorded or saved. */
  get sealed(): boolean {
    return this.#sealed;
  }

  /** Marks the graph as sent (a request packs when it starts, so later changes would be lost). */
  seal(): void {
    this.#sealed = true;
  }

  /** How the graph replays the user's callback when an error needs a source line (see locationOf). */
  replayWith(replay: () => Graph): void {
    this.#replay = replay;
  }

  /** How many traces were begun. */
  get traceCount(): number {
    return this.#segments.length;
  }

  /** The input rows of trace `i` (the first by default). */
  rowsOf(i = 0): readonly Row[] {
    const s = this.#segments[i];
    if (!s) throw new Error(`no trace ${i} was recorded`);
    return s.rows;
  }

  #current(): TraceSegment {
    const s = this.#segments[this.#segments.length - 1];
    if (!s) throw new Error('no trace is being recorded');
    return s;
  }

  beginTrace(): void {
    this.#segments.push({ rows: [], invokes: [], begin: this.size, end: this.size, stop: false });
  }

  endTrace(): void {
    const s = this.#current();
    s.end = this.size;
    if (s.rows.length === 0) throw new Error('a trace needs an input: pass one to trace(), or call tracer.invoke(input, fn)');
  }

  /** Adds `rows` as the next invoke of the current trace; returns the invoke's index. */
  addInvoke(rows: readonly Row[]): number {
    const s = this.#current();
    const index = s.invokes.length;
    s.invokes.push([s.rows.length, rows.length]);
    s.rows.push(...rows);
    return index;
  }

  /** Ends the current trace's forward as soon as everything its nodes need has run. */
  stopTrace(): void {
    this.#current().stop = true;
  }

  /** Runs `record` with the nodes it adds applying at generation steps `steps` ([begin, end), end -1: every step). */
  withSteps<R>(steps: [number, number], record: () => R): R {
    const prev = this.#steps;
    this.#steps = steps;
    try {
      return record();
    } finally {
      this.#steps = prev;
    }
  }

  /**
   * Adds a node and writes its words. `args` are proxies, Tensors, constants or arrays of
   * them. `site`: the model's native id of a hook site (envoys record by id), or its name
   * (request() sends the id, or the name when the model has no such site). An argument that
   * cannot be encoded throws and leaves no trace of the node. Returns its id.
   */
  add(op: string, args: readonly unknown[], site?: string | number, invoke?: number): number {
    if (this.#sealed) throw new Error(`${op}: this trace has already been sent; record operations inside the trace callback`);
    if (args.length > 64) throw new Error(`${op}: too many arguments`);
    const w = this.#w;
    const mark = w.code.length;
    const tensors = w.tensors.length;
    const steps = this.#steps;
    let siteWord = -1;
    if (typeof site === 'number') siteWord = site;
    else if (site !== undefined) {
      siteWord = -2 - w.str(site);
      this.#named = true;
    }
    const at = w.header(op, siteWord, 0, invoke ?? -1, false, steps ? steps[0] : 0, steps ? steps[1] : 1, -1, args.length);
    w.label = op;
    try {
      for (let k = 0; k < args.length; k++) w.arg(args[k], 0);
    } catch (e) {
      w.code.length = mark;
      w.tensors.length = tensors;
      throw e;
    }
    const id = this.#ops.length;
    this.#ops.push(op);
    this.#starts.push(at);
    if (this.captureLocations) this.#stacks.push(captureStack());
    return id;
  }

  /** Marks node `id` to come back in the results. */
  save(id: number): void {
    // a request packs when it starts: a late save would change a queued one but not a sent one
    if (this.#sealed) throw new Error(`save(): this trace has already been sent; call .save() inside the trace callback (${this.#ops[id]} node ${id})`);
    this.#w.code[this.#starts[id] + 4] = 1;
  }

  isSaved(id: number): boolean {
    return this.#w.code[this.#starts[id] + 4] === 1;
  }

  /**
   * Where node `id` was recorded. Capturing a stack costs ~4 us a node, so traces record
   * without it; when an error needs a location, the replay (replayWith) runs the
   * (deterministic) callback into a graph that captures, and the node with the same id and op
   * names the line.
   */
  locationOf(id: number): string {
    if (this.captureLocations) return userLocation(this.#stacks[id]?.stack);
    if (this.#replay) {
      try {
        const again = this.#replay();
        if (again.#ops[id] === this.#ops[id]) return again.locationOf(id);
      } catch {
        // the replay itself failed: fall through
      }
    }
    return `node ${id} (${this.#ops[id] ?? '?'}; its source line could not be recovered)`;
  }

  /** Replaces node markers in a native error message with the user's source locations. */
  explain(message: string): string {
    return message.replace(LOC, (_, id: string) => this.locationOf(Number(id)));
  }

  /**
   * The request for the native entry: the traces' inputs and the packed nodes, for the model
   * `sites` (a native model, or its site name -> id table). `transient`:
   * the words share a buffer with the next transient request: send this one at once
   * (PackWriter.finish).
   */
  request(sites: NativeModel | ReadonlyMap<string, number>, transient = false): { traces: WireTrace[]; graph: PackedGraph } {
    const graph = this.#w.finish(this.size, transient);
    if (this.#named) {
      // a site recorded by name goes by the model's id in the copy sent (a remote model's ids
      // are the server's, given as a table)
      const ids = sites instanceof Map ? sites : siteIdsOf(sites as NativeModel);
      const { code, strings } = graph;
      for (let i = 0; i < this.#starts.length; i++) {
        const k = this.#starts[i] + 1;
        if (code[k] <= -2) {
          const id = ids.get(strings[-2 - code[k]]);
          if (id !== undefined) code[k] = id; // an unknown site stays named, for the native message
        }
      }
    }
    return { traces: this.#wireTraces(), graph };
  }

  #wireTraces(): WireTrace[] {
    const out: WireTrace[] = [];
    for (const s of this.#segments) {
      const b = makeBatch(s.rows, this.padId);
      out.push({ batch: b.batch, seq: b.seq, ids: b.ids, mask: b.mask, pos: b.pos, invokes: s.invokes, begin: s.begin, end: s.end, stop: s.stop });
    }
    return out;
  }
}
