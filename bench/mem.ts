// A child process of the benchmark: 20 plain forwards or 20 traces, then its peak RSS in KB.
import { LanguageModel, Tensor, setNumThreads } from '../dist/index.js';
import { native } from '../dist/native.js';
import { makeBatch } from '../dist/inputs.js';
import { PackWriter } from '../dist/trace/wire.js';
// the packed form of a graph with no nodes
const emptyGraph = () => new PackWriter().finish(0);
import { join } from 'node:path';

const [dir, mode, tokens, threads] = process.argv.slice(2);
setNumThreads(Number(threads));
const n = Number(tokens);
const ids = Array.from({ length: n }, (_, i) => (i * 37) % 500);
if (mode === 'plain') {
  const m = await native().loadModel(join(dir, 'plain.pt'), 'cpu', '');
  const trace = { ...makeBatch([{ ids, mask: ids.map(() => 1) }], 0), invokes: [[0, 1]] as [number, number][], begin: 0, end: 0, stop: false };
  for (let i = 0; i < 20; i++) await m.run({ traces: [trace], graph: emptyGraph() });
} else {
  const model = await LanguageModel.load(dir, { device: 'cpu' });
  const d = Number((model.config as { n_embd: number }).n_embd);
  const patch = Tensor.from(new Array(d).fill(0.01));
  for (let i = 0; i < 20; i++) {
    const acts = await model.trace(ids, (m) => {
      m.transformer.h[6].output[0].index(':, -1').add_(patch);
      return m.transformer.h.map((b: any) => b.output[0]);
    });
    acts.forEach((a: Tensor) => a.dispose());
  }
}
console.log(process.resourceUsage().maxRSS);
