// Cross-request batching: trace requests for one model that wait together run as invokes of one
// forward. Each request's nodes, strings, tensors and invokes are appended to one packed graph
// (node references, string and tensor indices and invoke ids shifted), its rows appended to the
// batch, and the saved values split back by node range. A batched invoke already equals the same
// invoke alone (the tracer's own guarantee), so each result equals the request run alone.
//
// What merges: one-trace 'trace' requests whose every node belongs to an invoke (a node outside
// every invoke would see all rows) and whose rows have the same length (rows of different
// lengths would be left-padded to the longest, and a node reading an activation would see the
// padded width, which it does not alone). Anything else runs alone.
import type { DecodedRequest } from '../remote/envelope.js';
import type { WireTrace } from '../native.js';

const TAG = { null: 0, bool: 1, num: 2, str: 3, tensor: 4, ref: 5, list: 6 } as const;

/** Whether a (validated) request can join a batch; its key otherwise (same key: mergeable). */
export function batchKey(req: DecodedRequest): string | undefined {
  if (req.kind !== 'trace' || req.traces.length !== 1) return undefined;
  const t = req.traces[0];
  let ok = true;
  walk(req.graph.code, {
    header: (h) => {
      if (h.invoke < 0) ok = false;
    },
  });
  return ok ? `${t.seq}` : undefined;
}

interface Header {
  at: number;
  op: number;
  site: number;
  invoke: number;
  loc: number;
}

/** Walks packed code (already validated): each node's header, each argument word that names something. */
function walk(
  code: Float64Array,
  visit: { header?: (h: Header) => void; ref?: (at: number) => void; str?: (at: number) => void; tensor?: (at: number) => void },
): void {
  let i = 2;
  const arg = (): void => {
    const tag = code[i++];
    if (tag === TAG.null) return;
    const at = i++;
    if (tag === TAG.ref) visit.ref?.(at);
    else if (tag === TAG.str) visit.str?.(at);
    else if (tag === TAG.tensor) visit.tensor?.(at);
    else if (tag === TAG.list) for (let k = 0; k < code[at]; k++) arg();
  };
  const count = code[1];
  for (let n = 0; n < count; n++) {
    const h = { at: i, op: code[i], site: code[i + 1], invoke: code[i + 3], loc: code[i + 7] };
    visit.header?.(h);
    const nargs = code[i + 8];
    i += 9;
    for (let k = 0; k < nargs; k++) arg();
  }
}

export interface Batch {
  request: { traces: WireTrace[]; graph: DecodedRequest['graph'] };
  /** the merged run's saved values (flat) split into each request's, its node ids as they were */
  split(saved: readonly unknown[]): unknown[][];
}

/** Merges requests that share a batchKey into one request. */
export function mergeRequests(reqs: readonly DecodedRequest[]): Batch {
  const words: number[] = [1, 0];
  const strings: string[] = [];
  const tensors: DecodedRequest['graph']['tensors'] = [];
  const invokes: [number, number][] = [];
  const starts: number[] = [];
  let nodes = 0;
  let rows = 0;
  const seq = reqs[0].traces[0].seq;
  let stop = true;
  for (const r of reqs) {
    const t = r.traces[0];
    const code = r.graph.code.slice();
    const [nodeOff, strOff, tenOff, invOff] = [nodes, strings.length, tensors.length, invokes.length];
    walk(code, {
      header: (h) => {
        code[h.at] += strOff;
        if (h.site <= -2) code[h.at + 1] = h.site - strOff;
        if (h.invoke >= 0) code[h.at + 3] += invOff;
        if (h.loc >= 0) code[h.at + 7] += strOff;
      },
      ref: (at) => (code[at] += nodeOff),
      str: (at) => (code[at] += strOff),
      tensor: (at) => (code[at] += tenOff),
    });
    for (let i = 2; i < code.length; i++) words.push(code[i]);
    strings.push(...r.graph.strings);
    tensors.push(...r.graph.tensors);
    for (const [s, c] of t.invokes) invokes.push([s + rows, c]);
    starts.push(nodes);
    nodes += code[1];
    rows += t.batch;
    stop &&= t.stop;
  }
  words[1] = nodes;
  const ids = new Int32Array(rows * seq);
  const mask = new Int32Array(rows * seq);
  const pos = new Int32Array(rows * seq);
  let at = 0;
  for (const r of reqs) {
    const t = r.traces[0];
    for (let i = 0; i < t.batch * seq; i++, at++) {
      ids[at] = Number(t.ids[i]);
      mask[at] = Number(t.mask[i]);
      pos[at] = Number(t.pos[i]);
    }
  }
  return {
    request: {
      traces: [{ batch: rows, seq, ids, mask, pos, invokes, begin: 0, end: nodes, stop }],
      graph: { code: new Float64Array(words), strings, tensors },
    },
    split(saved) {
      const out: unknown[][] = reqs.map(() => []);
      for (let i = 0; i + 1 < saved.length; i += 2) {
        const id = saved[i] as number;
        let k = starts.length - 1;
        while (starts[k] > id) k--;
        out[k].push(id - starts[k], saved[i + 1]);
      }
      return out;
    },
  };
}
