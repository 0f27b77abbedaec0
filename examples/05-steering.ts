// Tutorial 5: steering with a vector made from two prompts.
// Run: npx tsx examples/05-steering.ts [model-dir]
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/gpt2';
await using model = await LanguageModel.load(dir);
const [love, hate] = await Promise.all([
  model.trace('I love this wonderful place', (m) => m.transformer.h[6].output[0].mean(1)),
  model.trace('I hate this terrible place', (m) => m.transformer.h[6].output[0].mean(1)),
]);
const steer = love.sub(hate); // [1, d]
for (const scale of [0, 2, 4, 8]) {
  const probs = await model.trace('This restaurant is', (m) => {
    m.transformer.h[6].output[0].add_(steer.mul(scale)); // at every position
    return m.output.logits.index('0, -1').softmax(-1);
  });
  const top = probs.topk(3);
  const words = (top.indices.toArray() as number[]).map((id) => JSON.stringify(model.tokenizer.decode([id])));
  console.log(`scale ${scale}: ${words.join(' ')}`);
}
