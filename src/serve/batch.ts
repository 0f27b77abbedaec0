// Cross-request batching: trace requests for one model that wait together run as invokes of one
// forward. Each request's nodes, strings, tensors and invokes are appended to one packed graph
// (node references, string and tensor indices and invoke ids shifted), its rows appended to the
// batch, and the saved values split back by node range. A batched invoke already equals the same
// invoke alone (the tracer's own guarantee), so each result equals the request run alone.
//
// What merges: one-trace 'trace' requests whose every node belongs to an invoke (a node outside
// every invoke would see all rows) and whose rows have the same length (rows of different
// lengths would be left-padded to the longest, and a node reading an activation would see the
// padded width, which it does not alone). Greedy generations with the same length, maxNewTokens,
// stop ids and cache use merge step by step too: rows are independent, a row that stops emits
// nothing more, and each request's share is cut back to the steps it would have run alone (its
// rows' longest output): later steps' tokens, events and saved values are dropped. Sampled
// generations (one random stream for all rows) and stop strings run alone.
import { disposeValues, type DecodedRequest, type WireResult } from '../remote/envelope.js';
import type { WireTrace } from '../native.js';

const TAG = { null: 0, bool: 1, num: 2, str: 3, tensor: 4, ref: 5, list: 6 } as const;

/** Whether a (validated) request can join a batch; its key otherwise (same key: mergeable). */
export function batchKey(req: DecodedRequest): string | undefined {
  if (req.kind === 'session' || req.traces.length !== 1) return undefined;
  const g = req.generate;
  if (g && (g.temperature !== 0 || g.stopStrings.length > 0)) return undefined;
  const t = req.traces[0];
  let ok = true;
  walk(req.graph.code, {
    header: (h) => {
      if (h.invoke < 0) ok = false;
    },
  });
  if (!ok) return undefined;
  return g ? `generate ${t.seq} ${g.maxNewTokens} ${g.useCache} ${[...new Set(g.stopIds)].sort((a, b) => a - b).join(',')}` : `trace ${t.seq}`;
}

interface Header {
  at: number;
  op: number;
  site: number;
  invoke: number;
  begin: number;
  end: number;
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
    const h = { at: i, op: code[i], site: code[i + 1], invoke: code[i + 3], begin: code[i + 5], end: code[i + 6], loc: code[i + 7] };
    visit.header?.(h);
    const nargs = code[i + 8];
    i += 9;
    for (let k = 0; k < nargs; k++) arg();
  }
}

export interface Batch {
  request: { traces: WireTrace[]; graph: DecodedRequest['graph']; generate?: DecodedRequest['generate'] };
  /** each request's rows of the batch: [first, count] */
  rows: [number, number][];
  /** the merged run's saved values (flat) split into each request's, its node ids as they were */
  split(saved: readonly unknown[]): unknown[][];
  /** a merged generation's result split into each request's, cut to the steps it runs alone */
  splitGeneration(result: WireResult): WireResult[];
}

/** Merges requests that share a batchKey into one request. */
export function mergeRequests(reqs: readonly DecodedRequest[]): Batch {
  const words: number[] = [1, 0];
  const strings: string[] = [];
  const tensors: DecodedRequest['graph']['tensors'] = [];
  const invokes: [number, number][] = [];
  const starts: number[] = [];
  const rowsOf: [number, number][] = [];
  const nodeSteps: [number, number][][] = [];
  let nodes = 0;
  let rows = 0;
  const seq = reqs[0].traces[0].seq;
  let stop = true;
  for (const r of reqs) {
    const t = r.traces[0];
    const code = r.graph.code.slice();
    const [nodeOff, strOff, tenOff, invOff] = [nodes, strings.length, tensors.length, invokes.length];
    const steps: [number, number][] = [];
    nodeSteps.push(steps);
    walk(code, {
      header: (h) => {
        steps.push([h.begin, h.end]);
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
    rowsOf.push([rows, t.batch]);
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
  const split = (saved: readonly unknown[]): unknown[][] => {
    const out: unknown[][] = reqs.map(() => []);
    for (let i = 0; i + 1 < saved.length; i += 2) {
      const id = saved[i] as number;
      let k = starts.length - 1;
      while (starts[k] > id) k--;
      out[k].push(id - starts[k], saved[i + 1]);
    }
    return out;
  };
  return {
    request: {
      traces: [{ batch: rows, seq, ids, mask, pos, invokes, begin: 0, end: nodes, stop }],
      graph: { code: new Float64Array(words), strings, tensors },
      ...(reqs[0].generate ? { generate: reqs[0].generate } : {}),
    },
    rows: rowsOf,
    split,
    splitGeneration(result) {
      const parts = split(result.saved);
      const gen = result.generate!;
      return reqs.map((_, k) => {
        const [first, count] = rowsOf[k];
        const tokens = gen.tokens.slice(first, first + count);
        // alone, it stops once all its rows have stopped: its longest row's length
        const steps = tokens.reduce((m, r) => Math.max(m, r.length), 0);
        const saved: unknown[] = [];
        const part = parts[k];
        for (let i = 0; i + 1 < part.length; i += 2) {
          const id = part[i] as number;
          const v = part[i + 1];
          const [begin, end] = nodeSteps[k][id];
          if (end !== begin + 1) {
            // one value per step it ran at: keep those of the steps it runs alone
            const keep = Math.max(0, Math.min(end < 0 ? Infinity : end, steps) - begin);
            const all = v as unknown[];
            disposeValues(all.slice(keep));
            saved.push(id, all.slice(0, keep));
          } else if (begin < steps) saved.push(id, v);
          else disposeValues(v);
        }
        return { saved, generate: { tokens, steps, usedCache: gen.usedCache } };
      });
    },
  };
}
