// Tutorial 5: steering during generation with a vector made from prompts: the mean activation of
// positive reviews minus that of negative ones, added at one layer at every step.
// Run: npx tsx examples/05-steering.ts [model-dir] [layer]
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/tiny-facts';
const layer = Number(process.argv[3] ?? 1);
await using model = await LanguageModel.load(dir);
const positive = [
  'This restaurant is wonderful. The food was delicious and the service was friendly.',
  'The food was amazing. The service was perfect and the dessert was lovely.',
  'What a fantastic place. The food was fresh and the staff were great.',
];
const negative = [
  'This restaurant is terrible. The food was bland and the service was rude.',
  'The food was awful. The service was slow and the dessert was stale.',
  'What a horrible place. The food was disgusting and the staff were boring.',
];
const mean = async (texts: string[]) => {
  const acts = await Promise.all(texts.map((t) => model.trace(t, (m) => m.transformer.h[layer].output[0].mean(1))));
  return acts.reduce((a, b) => a.add(b)).div(texts.length); // [1, d]
};
const steer = (await mean(positive)).sub(await mean(negative));
console.log(`steering vector: layer ${layer}, norm ${steer.norm().item().toFixed(2)}`);
for (const scale of [-2, -1, 0, 1, 2]) {
  const out = await model.generate('The food was', { maxNewTokens: 12, stop: ['\n'] }, (m, gen) => {
    gen.all((mm) => {
      mm.transformer.h[layer].output[0].add_(steer.mul(scale)); // every position, every step
    });
  });
  console.log(`scale ${String(scale).padStart(2)}: The food was${String(out.text).trimEnd()}`);
}
