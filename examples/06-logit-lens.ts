// Tutorial 6: the logit lens: each layer's residual through the final norm and the head.
// Writes the top 3 per layer as a table: plots/logit-lens.svg.
// Run: npx tsx examples/06-logit-lens.ts [model-dir]
import { LanguageModel } from '../src/index.js';
import { logitLensTable, writePlot } from '../src/plot.js';

const dir = process.argv[2] ?? 'models/gpt2';
await using model = await LanguageModel.load(dir);
const lens = await model.trace('The Eiffel Tower is in the city of', (m) =>
  m.transformer.h.map((b: any) => m.lm_head(m.transformer.ln_f(b.output[0])).index('0, -1').softmax(-1).topk(3)),
);
const rows = lens.map(({ values, indices }, layer) => {
  const ids = Array.from(indices.data(), Number);
  const probs = Array.from(values.data(), Number);
  console.log(`layer ${String(layer).padStart(2)}: ${JSON.stringify(model.tokenizer.decode([ids[0]])).padEnd(12)} p=${probs[0].toFixed(4)}`);
  return { layer: String(layer), tokens: ids.map((id) => model.tokenizer.decode([id])), probs };
});
const path = writePlot('plots/logit-lens.svg', logitLensTable(rows, { title: 'Logit lens: "The Eiffel Tower is in the city of" (top 3 per layer)' }));
console.log(`wrote ${path}`);
