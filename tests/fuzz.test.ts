// Fuzzing the native graph entry: random and mutated graphs must each end in a clean
// result or a clean error, never a crash, within a time bound. FUZZ_ITERS sets the budget
// (`npm run fuzz` runs a long one); the seed is fixed unless FUZZ_SEED is given.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import type { NativeModel, WireTrace } from '../src/native.js';
import { Graph } from '../src/trace/graph.js';
import { MODELS, runNodes } from './helpers.js';
import { nodesOf, wireRequest, type WireNode } from './support/wire.js';
import { native } from '../src/native.js';

const ITERS = Number(process.env.FUZZ_ITERS ?? 1500);
const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const CASE_TIMEOUT_MS = Number(process.env.FUZZ_CASE_TIMEOUT_MS ?? 10_000);

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

let model: LanguageModel;
let nm: NativeModel;
let sites: string[];
let valid: { traces: WireTrace[]; nodes: WireNode[] }[] = [];
beforeAll(async () => {
  model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
  nm = model.native;
  sites = nm.sites();
  // valid graphs recorded through the public tracer, to mutate
  const record = (fn: (m: any) => unknown, input: any = 'The Eiffel Tower is in Paris') => {
    const g = new Graph(model.padId);
    const result = model.recordTrace(g, input, fn);
    void result;
    return nodesOf(g, sites);
  };
  valid = [
    record((m) => m.transformer.h[3].output[0].save()),
    record((m) => { m.transformer.h[2].output[0].index(':, -1').add_(Tensor.from(new Array(64).fill(0.5))); return m.output.logits.save(); }),
    record((m) => m.lm_head(m.transformer.ln_f(m.transformer.h[5].output[0])).softmax(-1).topk(3).values.save()),
    record((m) => { m.transformer.h[1].mlp.output = 0; return m.transformer.h[4].output[0].mean(1).save(); }, ['a b c', 'longer prompt here']),
  ];
});
afterAll(async () => {
  await model.dispose();
});

describe('fuzz the native graph entry', () => {
  it(`${ITERS} random and mutated graphs end cleanly (seed ${SEED})`, async () => {
    const rand = rng(SEED);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    const ops = [...native().opNames(), 'read', 'write', 'apply', 'bogus', ''];
    const tensors = [
      Tensor.from([1, 2, 3]),
      Tensor.from([[0.5, -1], [2, 3]]),
      Tensor.from(3),
      Tensor.from(new Array(64).fill(0.1)),
      Tensor.from([1, 0, 1], { dtype: 'int64' }),
      Tensor.from([true, false]),
      Tensor.from([1, 2], { dtype: 'float16' }),
      Tensor.from(new Float32Array(0), { shape: [0, 4] }),
    ];
    const paths = model.modulePaths();
    const weird = [NaN, Infinity, -Infinity, 1e300, -1e300, 2 ** 53, -(2 ** 63), 2 ** 31, -1, 0, 1, 0.5, 1e-9, 1e6];
    const randArg = (id: number, depth = 0): unknown => {
      switch (Math.floor(rand() * 12)) {
        case 0: return { ref: Math.floor(rand() * (id + 2)) - 1 };
        case 1: return { ref: id > 0 ? Math.floor(rand() * id) : 0 };
        case 2: return pick(weird);
        case 3: return Math.floor(rand() * 9) - 4;
        case 4: return pick(tensors).native;
        case 5: return pick(['...', 'None', ':', 'cuda', 'cpu', 'float16', 'int8', 'x'.repeat(1000), '', pick(paths), pick(sites)]);
        case 6: return depth < 3 ? Array.from({ length: Math.floor(rand() * 5) }, () => randArg(id, depth + 1)) : [];
        case 7: return null;
        case 8: return rand() < 0.5;
        case 9: return { ref: pick(weird) };
        case 10: return pick([{}, { ref: '1' }, { foo: 1 }, () => 1, Symbol('s'), 10n, new Uint8Array(3)]);
        default: return [Math.floor(rand() * 5) - 2, null, pick([null, 1, 2])];
      }
    };
    const randNode = (id: number): unknown => {
      if (rand() < 0.03) return pick([null, 42, 'node', [], { id }]);
      const op = pick(ops);
      const node: Record<string, unknown> = { id: rand() < 0.97 ? id : Math.floor(rand() * 5), op, args: Array.from({ length: Math.floor(rand() * 5) }, () => randArg(id)) };
      if (op === 'apply' && rand() < 0.7) (node.args as unknown[]).unshift(pick(paths));
      if (op === 'read' || op === 'write' || rand() < 0.1) node.site = rand() < 0.9 ? pick(sites) : pick(['', 'nope', 'transformer.h.99:output:0', 5]);
      if (rand() < 0.2) node.occ = pick([0, 1, 2, -1, 1e9, 0.5]);
      if (rand() < 0.3) node.invoke = pick([0, 1, -1, 3, 1e9]);
      if (rand() < 0.5) node.save = true;
      if (rand() < 0.1) node.loc = pick([5, null, 'x.ts:1:1']);
      return node;
    };
    const baseTrace = (n: number, seq = 4, batch = 1): Record<string, unknown> => ({
      batch, seq,
      ids: BigInt64Array.from({ length: batch * seq }, (_, i) => BigInt((i * 7) % 512)),
      mask: BigInt64Array.from({ length: batch * seq }, () => 1n),
      pos: BigInt64Array.from({ length: batch * seq }, (_, i) => BigInt(i % seq)),
      invokes: batch === 2 ? [[0, 1], [1, 1]] : [[0, 1]],
      begin: 0, end: n, stop: rand() < 0.1,
    });
    const mutateTrace = (t: Record<string, unknown>) => {
      const key = pick(['batch', 'seq', 'ids', 'mask', 'pos', 'invokes', 'begin', 'end']);
      t[key] = pick([undefined, null, -1, 0, 1e9, 'x', [], [[0, 5]], new BigInt64Array(1), new Float32Array(4), BigInt64Array.from([99999n, 0n, 0n, 0n]), Int32Array.from([99999, 0, 0, 0]), new Int32Array(2)]);
    };
    const mutateNode = (nodes: any[]) => {
      if (nodes.length === 0) return;
      const n = { ...nodes[Math.floor(rand() * nodes.length)] };
      const key = pick(['op', 'args', 'site', 'occ', 'invoke', 'id']);
      const nid = typeof n.id === 'number' && Number.isFinite(n.id) ? n.id : 0;
      n[key] = key === 'args' ? Array.from({ length: Math.floor(rand() * 4) }, () => randArg(nid)) : key === 'op' ? pick(ops) : randArg(nid);
      nodes[nodes.indexOf(nodes.find((x) => x.id === n.id) ?? nodes[0])] = n;
    };

    let ok = 0;
    let rejected = 0;
    const messages = new Map<string, number>();
    for (let i = 0; i < ITERS; i++) {
      let req: any;
      const kind = rand();
      if (kind < 0.3) {
        // well-formed chains reach the interpreter: reads at random sites, then random ops on them
        const tableOps = native().opNames();
        const nodes: any[] = [];
        const n = 1 + Math.floor(rand() * 8);
        for (let k = 0; k < n; k++) {
          if (k === 0 || rand() < 0.25) nodes.push({ id: k, op: 'read', args: [], site: pick(sites), save: rand() < 0.5 });
          else if (rand() < 0.1) nodes.push({ id: k, op: 'write', args: [rand() < 0.5 ? { ref: Math.floor(rand() * k) } : pick(weird)], site: pick(sites) });
          else if (rand() < 0.1) nodes.push({ id: k, op: 'apply', args: [pick(paths), { ref: Math.floor(rand() * k) }] });
          else nodes.push({ id: k, op: pick(tableOps), args: [{ ref: Math.floor(rand() * k) }, ...Array.from({ length: Math.floor(rand() * 3) }, () => randArg(k))], save: rand() < 0.5 });
        }
        req = { traces: [baseTrace(n, 1 + Math.floor(rand() * 6), rand() < 0.3 ? 2 : 1)], nodes };
        req.nodes.forEach((x: any) => { if (req.traces[0].invokes.length === 2 && rand() < 0.5) x.invoke = Math.floor(rand() * 2); });
      } else if (kind < 0.6) {
        const n = Math.floor(rand() * 10);
        const nodes = Array.from({ length: n }, (_, k) => randNode(k));
        const batch = rand() < 0.3 ? 2 : 1;
        req = { traces: [baseTrace(n, 1 + Math.floor(rand() * 6), batch)], nodes };
        if (rand() < 0.15) mutateTrace(req.traces[0]);
      } else {
        const v = pick(valid);
        req = { traces: v.traces.map((t) => ({ ...t })), nodes: v.nodes.map((n) => ({ ...n, args: [...n.args] })) };
        const muts = 1 + Math.floor(rand() * 3);
        for (let k = 0; k < muts; k++) (rand() < 0.8 ? mutateNode(req.nodes) : mutateTrace(req.traces[0]));
      }
      if (rand() < 0.02) req = pick([null, undefined, 1, 'x', { traces: 'x' }, { nodes: [] }, { traces: [], nodes: [] }]);
      if (rand() < 0.25) {
        // the packed form, its words mutated: what a hostile client could send as is
        let packed: any;
        try {
          packed = wireRequest(nm, req);
        } catch {
          packed = wireRequest(nm, pick(valid));
        }
        const code = Array.from(packed.graph.code as Float64Array);
        const muts = 1 + Math.floor(rand() * 3);
        for (let k = 0; k < muts && code.length; k++) {
          const at = Math.floor(rand() * code.length);
          const r = rand();
          if (r < 0.15) code.splice(at, 1);
          else if (r < 0.3) code.splice(at, 0, pick([0, 1, -1, 6]));
          else code[at] = pick([0, 1, 2, 3, 4, 5, 6, 7, -1, -2, -3, 64, 4096, 4097, 2 ** 31, 2 ** 53, -(2 ** 40), 0.5, NaN, Infinity, -Infinity, code[at] + 1, code[at] - 1]);
        }
        req = { ...packed, graph: { ...packed.graph, code: Float64Array.from(code) } };
      }
      const outcome = await Promise.race([
        runNodes(nm, req).then(
          () => 'ok',
          (e: unknown) => {
            expect(e).toBeInstanceOf(Error);
            expect(typeof (e as Error).message).toBe('string');
            expect((e as Error).message.length).toBeGreaterThan(0);
            return 'err:' + (e as Error).message.split(/[:(]/)[0].slice(0, 40);
          },
        ),
        new Promise<string>((_, reject) => setTimeout(() => reject(new Error(`case ${i} took over ${CASE_TIMEOUT_MS} ms`)), CASE_TIMEOUT_MS)),
      ]);
      if (outcome === 'ok') ok++;
      else {
        rejected++;
        messages.set(outcome, (messages.get(outcome) ?? 0) + 1);
      }
    }
    expect(ok + rejected).toBe(ITERS);
    // both paths are exercised: some graphs run, most are refused
    expect(ok).toBeGreaterThan(ITERS * 0.05);
    expect(rejected).toBeGreaterThan(ITERS * 0.3);
    // and the model still gives the plain result afterwards
    const logits = await model.trace('The Eiffel Tower', (m) => m.output.logits);
    const again = await model.trace('The Eiffel Tower', (m) => m.output.logits);
    expect(Array.from(logits.data() as Float32Array)).toEqual(Array.from(again.data() as Float32Array));
    if (process.env.FUZZ_VERBOSE) console.log({ ok, rejected, messages: [...messages.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30) });
  }, 600_000);
});
