// Splits the per-trace overhead of the tiny model into its parts (npx tsx bench/overhead.ts):
// the native forward alone, the same request pre-recorded (N-API, graph, results), and the
// whole trace (recording, wire form, results back as Tensors).
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LanguageModel, Tensor, setNumThreads } from '../dist/index.js';
import { native } from '../dist/native.js';
import { makeBatch } from '../dist/inputs.js';
import { PackWriter } from '../dist/trace/wire.js';
// the packed form of a graph with no nodes
const emptyGraph = () => new PackWriter().finish(0);
import { Graph } from '../dist/trace/graph.js';

const dir = join(import.meta.dirname, '..', 'models', 'gpt2');
setNumThreads(Number(process.env.BENCH_THREADS ?? 1));
const model = await LanguageModel.load(dir, { device: 'cpu' });
const plain = await native().loadModel(join(dir, 'plain.pt'), 'cpu', '');
plain.configure({ vocabSize: model.manifest.vocabSize });
const ids = Array.from({ length: 16 }, (_, i) => (i * 37) % 500);
const patch = Tensor.from(Array.from({ length: 64 }, (_, i) => Math.cos(i) * 0.01));
const intervention = (m: any) => {
  m.transformer.h[6].output[0].index(':, -1').add_(patch);
  return m.transformer.h.map((b: any) => b.output[0]);
};
const trace = { ...makeBatch([{ ids, mask: ids.map(() => 1) }], model.padId), invokes: [[0, 1]] as [number, number][], begin: 0, end: 0, stop: false };
const g = new Graph(model.padId);
model.recordTrace(g, ids, intervention);
g.ops.forEach((op, i) => op === 'read' && g.save(i));
const pre = g.request(model.native);
const fns: Record<string, () => Promise<unknown>> = {
  plain: () => plain.run({ traces: [trace], graph: emptyGraph() }),
  idle: () => model.native.run({ traces: [trace], graph: emptyGraph() }),
  prerecorded: async () => {
    const r = await model.native.run(pre);
    for (let i = 1; i < r.saved.length; i += 2) native().tensorDispose(r.saved[i] as never);
  },
  record: async () => {
    const gg = new Graph(model.padId);
    model.recordTrace(gg, ids, intervention);
    gg.request(model.native);
  },
  trace12: async () => {
    const acts = await model.trace(ids, intervention);
    acts.forEach((a: Tensor) => a.dispose());
  },
};
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const samples: Record<string, number[]> = Object.fromEntries(Object.keys(fns).map((k) => [k, []]));
for (const f of Object.values(fns)) for (let i = 0; i < 20; i++) await f();
for (let r = 0; r < 15; r++)
  for (const [k, f] of Object.entries(fns))
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await f();
      samples[k].push(performance.now() - t0);
    }
const q = (xs: number[], f: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * f)] * 1000;
for (const [k, v] of Object.entries(samples)) console.log(`${k.padEnd(12)} p10 ${q(v, 0.1).toFixed(0)} p50 ${q(v, 0.5).toFixed(0)} p90 ${q(v, 0.9).toFixed(0)}`);
const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, med(v) * 1000]));
console.log(Object.entries(m).map(([k, v]) => `${k.padEnd(12)} ${v.toFixed(1)} us`).join('\n'));
console.log(`overhead (trace12 - plain) ${(m.trace12 - m.plain).toFixed(1)} us; native part (prerecorded - plain) ${(m.prerecorded - m.plain).toFixed(1)} us; idle sites ${(m.idle - m.plain).toFixed(1)} us`);
await model.dispose();
