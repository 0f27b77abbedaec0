// Tutorial 3: cross-prompt sharing, two invokes in one forward.
// Run: npx tsx examples/03-cross-prompt.ts [model-dir]
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/gpt2';
await using model = await LanguageModel.load(dir);
const r = await model.trace((tracer) => {
  let cat: any;
  tracer.invoke('The cat sat on the mat', (m) => {
    cat = m.transformer.h[6].output[0];
  });
  return tracer.invoke('The dog ran through the park', (m) => {
    m.transformer.h[6].output[0].copy_(cat);
    return m.output.logits;
  });
});
const next = r.index('0, -1').argmax().item();
console.log(`dog prompt with the cat's layer-6 residual: next token ${JSON.stringify(model.tokenizer.decode([next]))}`);
