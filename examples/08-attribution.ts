// Tutorial 8: attribution patching. One forward and one backward on the corrupted prompt give,
// for every layer and position at once, a linear estimate of what patching the clean activation
// in there would do to the metric: grad · (clean − corrupted). Printed beside the real patching
// sweep (one forward per cell) and drawn as a heatmap (docs/attribution.svg).
// Run: npx tsx examples/08-attribution.ts [model-dir] [out.svg]   (default: models/tiny-facts)
import { LanguageModel, type Tensor } from '../src/index.js';
import { heatmap, writePlot } from '../src/plot.js';

const dir = process.argv[2] ?? 'models/tiny-facts';
const out = process.argv[3] ?? 'docs/attribution.svg';
await using model = await LanguageModel.load(dir);
const clean = model.tokenizer.encode('The Eiffel Tower is in the city of');
const corrupted = model.tokenizer.encode('The Space Needle is in the city of'); // as many tokens
const [paris, seattle] = [' Paris', ' Seattle'].map((w) => model.tokenizer.encode(w)[0]);
// the metric: how much more the model says Paris than Seattle
const metricOf = (logits: any) => logits.index(`0, -1, ${paris}`).sub(logits.index(`0, -1, ${seattle}`));

// one request: the clean activations, then the corrupted run with its backward
const { metric, attribution } = await model.session((s) => {
  const cleanActs = s.trace(clean, (m) => m.transformer.h.map((b: any) => b.output[0]));
  return s.trace(corrupted, (m) => {
    const metric = metricOf(m.output.logits);
    metric.backward();
    // h.grad is there during the backward: the products run then, natively, layer by layer
    const attribution = m.transformer.h.map((b: any, layer: number) => {
      const h = b.output[0];
      return h.grad.mul(cleanActs[layer].sub(h)).sum(-1).index('0'); // one number a position
    });
    return { metric, attribution };
  });
});

// the real thing, for comparison: each (layer, position) patched alone
const positions = corrupted.map((_, p) => p);
const patched = await model.session((s) => {
  const acts = s.trace(clean, (m) => m.transformer.h.map((b: any) => b.output[0]));
  return acts.map((act: any, layer: number) =>
    positions.map((p) =>
      s.trace(corrupted, (m) => {
        m.transformer.h[layer].output[0].index(`:, ${p}`).copy_(act.index(`:, ${p}`));
        return metricOf(m.output.logits);
      }),
    ),
  );
});

const base = metric.item() as number;
const estimate = attribution.map((t: Tensor) => Array.from(t.data() as Float32Array));
const actual = patched.map((row) => row.map((t) => (t.item() as number) - base));
const words = corrupted.map((id) => JSON.stringify(model.tokenizer.decode([id])));
const cell = (v: number) => v.toFixed(2).padStart(7);
console.log(`"The Space Needle is in the city of": logit(Paris) - logit(Seattle) = ${base.toFixed(3)}`);
console.log(`position    ${words.map((w) => w.padStart(11)).join('')}`);
estimate.forEach((row, layer) => {
  console.log(`layer ${layer} est${row.map((v) => cell(v).padStart(11)).join('')}`);
  console.log(`       real${actual[layer].map((v) => cell(v).padStart(11)).join('')}`);
});
// how well the one-backward estimate ranks the cells the sweep found
const xs = estimate.flat();
const ys = actual.flat();
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const [mx, my] = [mean(xs), mean(ys)];
const cov = mean(xs.map((x, i) => (x - mx) * (ys[i] - my)));
const corr = cov / Math.sqrt(mean(xs.map((x) => (x - mx) ** 2)) * mean(ys.map((y) => (y - my) ** 2)));
console.log(`correlation of estimate and real effect over ${xs.length} cells: ${corr.toFixed(3)}`);

const svg = heatmap(estimate, {
  title: 'attribution patching: grad · (clean − corrupted) of logit(Paris) − logit(Seattle)',
  rowLabels: estimate.map((_, layer) => String(layer)),
  colLabels: words,
  yLabel: 'layer',
  xLabel: 'position (corrupted prompt)',
  valueFormat: (v) => v.toFixed(1),
});
console.log(`heatmap: ${writePlot(out, svg)}`);
