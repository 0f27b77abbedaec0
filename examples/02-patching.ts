// Tutorial 2: activation patching, then a per-layer patching sweep, then a layer x position
// sweep drawn as a heatmap (plots/patching-sweep.svg).
// Run: npx tsx examples/02-patching.ts [model-dir]
import { LanguageModel } from '../src/index.js';
import { heatmap, writePlot } from '../src/plot.js';

const dir = process.argv[2] ?? 'models/gpt2';
await using model = await LanguageModel.load(dir);
const clean = model.tokenizer.encode('The Eiffel Tower is in the city of Paris');
const corrupted = model.tokenizer.encode('The Colosseum is in the city of Paris');
const n = Math.min(clean.length, corrupted.length);
const [c, k] = [clean.slice(-n), corrupted.slice(-n)]; // same length, aligned at the end
const answer = c[c.length - 1];

// patch layer 8's residual stream from the clean run into the corrupted run
const cleanAct = await model.trace(c, (m) => m.transformer.h[8].output[0]);
const patched = await model.trace(k, (m) => {
  m.transformer.h[8].output[0].copy_(cleanAct); // nnsight: output[0][:] = clean
  return m.output.logits;
});
console.log('patched logits', patched.shape);

// the sweep: each layer's last position, one session (one request, values stay native)
const scores = await model.session((s) => {
  const acts = s.trace(c.slice(0, -1), (m) => m.transformer.h.map((b: any) => b.output[0]));
  return acts.map((act: any, layer: number) =>
    s.trace(k.slice(0, -1), (m) => {
      m.transformer.h[layer].output[0].index(':, -1').copy_(act.index(':, -1'));
      return m.output.logits.index('0, -1').logSoftmax(-1).index(`${answer}`);
    }),
  );
});
console.log(`log p(${JSON.stringify(model.tokenizer.decode([answer]))}) with the clean last position patched in, per layer:`);
scores.forEach((t, layer) => console.log(`  layer ${String(layer).padStart(2)}: ${t.item().toFixed(4)}`));

// the layer x position sweep: for each of the last 4 positions and each layer, the clean
// activation at that position patched into the corrupted run; then a heatmap of log p(answer),
// centered at the corrupted run's own log p (red: patching there brings the answer back)
const prompt = { clean: c.slice(0, -1), corrupted: k.slice(0, -1) };
const first = Math.max(0, prompt.corrupted.length - 4);
const positions = Array.from({ length: prompt.corrupted.length - first }, (_, i) => first + i);
const grid = await model.session((s) => {
  const acts = s.trace(prompt.clean, (m) => m.transformer.h.map((b: any) => b.output[0]));
  const baseline = s.trace(prompt.corrupted, (m) => m.output.logits.index('0, -1').logSoftmax(-1).index(`${answer}`));
  const sweep = acts.map((act: any, layer: number) =>
    positions.map((p) =>
      s.trace(prompt.corrupted, (m) => {
        m.transformer.h[layer].output[0].index(`:, ${p}`).copy_(act.index(`:, ${p}`));
        return m.output.logits.index('0, -1').logSoftmax(-1).index(`${answer}`);
      }),
    ),
  );
  return { baseline, sweep };
});
const svg = heatmap(
  grid.sweep.map((row) => row.map((t) => t.item())),
  {
    title: `log p(${JSON.stringify(model.tokenizer.decode([answer]))}), clean activation patched in`,
    rowLabels: grid.sweep.map((_, layer) => String(layer)),
    colLabels: positions.map((p) => `${p} ${JSON.stringify(model.tokenizer.decode([prompt.corrupted[p]]))}`),
    yLabel: 'layer',
    xLabel: 'position',
    center: grid.baseline.item(),
  },
);
console.log(`patching sweep (layer x position, log p; corrupted run ${grid.baseline.item().toFixed(4)}): ${writePlot('plots/patching-sweep.svg', svg)}`);
