// Tutorial 6: the logit lens: each layer's residual through the final norm and the head.
// Run: npx tsx examples/06-logit-lens.ts [model-dir]
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/gpt2';
await using model = await LanguageModel.load(dir);
const lens = await model.trace('The Eiffel Tower is in the city of', (m) =>
  m.transformer.h.map((b: any) => m.lm_head(m.transformer.ln_f(b.output[0])).index('0, -1').softmax(-1).topk(1)),
);
lens.forEach(({ values, indices }, layer) => {
  const id = indices.item();
  console.log(`layer ${String(layer).padStart(2)}: ${JSON.stringify(model.tokenizer.decode([id])).padEnd(12)} p=${values.item().toFixed(4)}`);
});
