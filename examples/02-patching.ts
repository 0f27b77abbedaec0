// Tutorial 2: activation patching. The clean run's last position, copied into the corrupted run
// layer by layer: from which layer on does the corrupted prompt answer the clean city? Then a
// layer x position sweep drawn as a heatmap (plots/patching-sweep.svg).
// Run: npx tsx examples/02-patching.ts [model-dir]   (default: models/tiny-facts)
import { LanguageModel } from '../src/index.js';
import { heatmap, writePlot } from '../src/plot.js';

const dir = process.argv[2] ?? 'models/tiny-facts';
await using model = await LanguageModel.load(dir);
const clean = model.tokenizer.encode('The Eiffel Tower is in the city of');
const corrupted = model.tokenizer.encode('The Colosseum is in the city of');
const [paris, rome] = [' Paris', ' Rome'].map((w) => model.tokenizer.encode(w)[0]);
const word = (id: number) => JSON.stringify(model.tokenizer.decode([id]));

// the sweep: each layer's last position, one session (one request, values stay native)
const sweep = await model.session((s) => {
  const acts = s.trace(clean, (m) => m.transformer.h.map((b: any) => b.output[0].index(':, -1')));
  return acts.map((act: any, layer: number) =>
    s.trace(corrupted, (m) => {
      m.transformer.h[layer].output[0].index(':, -1').copy_(act);
      return m.output.logits.index('0, -1').softmax(-1);
    }),
  );
});
const plain = await model.trace(corrupted, (m) => m.output.logits.index('0, -1').softmax(-1));
const row = (p: typeof plain) => `p(Paris) ${p.index(`${paris}`).item().toFixed(3)}  p(Rome) ${p.index(`${rome}`).item().toFixed(3)}  top-1 ${word(p.argmax().item())}`;
console.log('"The Colosseum is in the city of", the last position patched from "The Eiffel Tower ..."');
console.log(`  not patched: ${row(plain)}`);
sweep.forEach((p, layer) => console.log(`  layer ${layer}:     ${row(p)}`));

// layer x position: the corrupted run's positions 1.. (aligned with the clean run from the end,
// so "Colosseum" faces "Tower"), each patched alone; the cell is p(Paris)
const offset = clean.length - corrupted.length;
const positions = Array.from({ length: corrupted.length - 1 }, (_, i) => i + 1);
const grid = await model.session((s) => {
  const acts = s.trace(clean, (m) => m.transformer.h.map((b: any) => b.output[0]));
  return acts.map((act: any, layer: number) =>
    positions.map((p) =>
      s.trace(corrupted, (m) => {
        m.transformer.h[layer].output[0].index(`:, ${p}`).copy_(act.index(`:, ${p + offset}`));
        return m.output.logits.index('0, -1').softmax(-1).index(`${paris}`);
      }),
    ),
  );
});
const values = grid.map((r) => r.map((t) => t.item()));
const svg = heatmap(values, {
  title: 'p(" Paris") for "The Colosseum is in the city of", one clean position patched in',
  rowLabels: values.map((_, layer) => String(layer)),
  colLabels: positions.map((p) => word(corrupted[p])),
  yLabel: 'layer',
  xLabel: 'patched position (corrupted prompt)',
  colorScale: 'sequential',
  valueFormat: (v) => v.toFixed(2),
});
console.log(`layer x position sweep: ${writePlot('plots/patching-sweep.svg', svg)}`);
