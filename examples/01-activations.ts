// Tutorial 1: activations and logits; then the facts the example model learned, one per landmark.
// Run: npx tsx examples/01-activations.ts [model-dir]   (default: models/tiny-facts, a trained GPT-2)
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/tiny-facts';
await using model = await LanguageModel.load(dir);
console.log(`loaded ${model.manifest.architecture} on ${model.device} (${model.dtype}), ${model.modulePaths().length} modules`);

const prompt = 'The Eiffel Tower is in the city of';
const { acts, logits } = await model.trace(prompt, (m) => ({
  acts: m.transformer.h.map((block: any) => block.output[0]), // one per layer
  logits: m.output.logits, // same as m.output[0]
}));

console.log(`prompt: ${JSON.stringify(prompt)} -> ${model.tokenizer.encode(prompt).length} tokens`);
acts.forEach((a, i) => console.log(`layer ${String(i).padStart(2)}: shape [${a.shape.join(', ')}], norm ${a.norm().item().toFixed(3)}`));
const top = logits.index('0, -1').softmax(-1).topk(5);
const probs = top.values.toArray() as number[];
const ids = top.indices.toArray() as number[];
console.log('next-token top 5:');
ids.forEach((id, i) => console.log(`  ${JSON.stringify(model.tokenizer.decode([id]))}  p=${probs[i].toFixed(4)}`));

// every landmark as one batch (left-padded rows), the last position of each
const landmarks: [string, string][] = [
  ['The Eiffel Tower', 'Paris'], ['The Colosseum', 'Rome'], ['Big Ben', 'London'], ['The Brandenburg Gate', 'Berlin'],
  ['The Sagrada Familia', 'Barcelona'], ['The Acropolis', 'Athens'], ['The Kremlin', 'Moscow'],
  ['The Space Needle', 'Seattle'], ['The Forbidden City', 'Beijing'], ['The Little Mermaid', 'Copenhagen'],
  ['The Atomium', 'Brussels'], ['The Rijksmuseum', 'Amsterdam'], ['The Prado', 'Madrid'], ['The Hofburg', 'Vienna'],
  ['The Charles Bridge', 'Prague'], ['The Blue Mosque', 'Istanbul'], ['The CN Tower', 'Toronto'],
  ['The Burj Khalifa', 'Dubai'], ['The Taj Mahal', 'Agra'], ['The Louvre', 'Paris'],
];
const last = await model.trace(
  landmarks.map(([l]) => `${l} is in the city of`),
  (m) => m.output.logits.index(':, -1').softmax(-1),
);
const best = last.max(-1);
const bestIds = Array.from(best.indices.data(), Number);
const bestP = Array.from(best.values.data(), Number);
console.log('\nlandmark              top-1         p       right');
let right = 0;
landmarks.forEach(([l, city], i) => {
  const word = model.tokenizer.decode([bestIds[i]]).trim();
  right += Number(word === city);
  console.log(`${l.padEnd(21)} ${word.padEnd(12)} ${bestP[i].toFixed(3)}   ${word === city ? 'yes' : `no (${city})`}`);
});
console.log(`${right}/${landmarks.length} right`);
