// Tutorial 6: the logit lens: each layer's residual through the final norm and the head. Prints
// the top 3 per layer for one prompt (plots/logit-lens.svg) and draws the right city's probability
// per layer for every landmark as a heatmap (plots/logit-lens-cities.svg).
// Run: npx tsx examples/06-logit-lens.ts [model-dir]   (default: models/tiny-facts)
import { LanguageModel } from '../src/index.js';
import { heatmap, logitLensTable, writePlot } from '../src/plot.js';

const dir = process.argv[2] ?? 'models/tiny-facts';
await using model = await LanguageModel.load(dir);
const prompt = 'The Eiffel Tower is in the city of';
const lens = await model.trace(prompt, (m) =>
  m.transformer.h.map((b: any) => m.lm_head(m.transformer.ln_f(b.output[0])).index('0, -1').softmax(-1).topk(3)),
);
const rows = lens.map(({ values, indices }, layer) => {
  const ids = Array.from(indices.data(), Number);
  const probs = Array.from(values.data(), Number);
  console.log(`layer ${String(layer).padStart(2)}: ${JSON.stringify(model.tokenizer.decode([ids[0]])).padEnd(12)} p=${probs[0].toFixed(4)}`);
  return { layer: String(layer), tokens: ids.map((id) => model.tokenizer.decode([id])), probs };
});
console.log(`wrote ${writePlot('plots/logit-lens.svg', logitLensTable(rows, { title: `Logit lens: ${JSON.stringify(prompt)} (top 3 per layer)` }))}`);

const landmarks: [string, string][] = [
  ['The Eiffel Tower', 'Paris'], ['The Colosseum', 'Rome'], ['Big Ben', 'London'], ['The Brandenburg Gate', 'Berlin'],
  ['The Sagrada Familia', 'Barcelona'], ['The Acropolis', 'Athens'], ['The Kremlin', 'Moscow'],
  ['The Space Needle', 'Seattle'], ['The Forbidden City', 'Beijing'], ['The Little Mermaid', 'Copenhagen'],
  ['The Atomium', 'Brussels'], ['The Rijksmuseum', 'Amsterdam'], ['The Prado', 'Madrid'], ['The Hofburg', 'Vienna'],
  ['The Charles Bridge', 'Prague'], ['The Blue Mosque', 'Istanbul'], ['The CN Tower', 'Toronto'],
  ['The Burj Khalifa', 'Dubai'], ['The Taj Mahal', 'Agra'], ['The Louvre', 'Paris'],
];
const cityIds = landmarks.map(([, c]) => model.tokenizer.encode(` ${c}`)[0]);
// one batch of all landmarks; per layer, each row's probability of its own city
const perLayer = await model.trace(
  landmarks.map(([l]) => `${l} is in the city of`),
  (m) => m.transformer.h.map((b: any) => m.lm_head(m.transformer.ln_f(b.output[0].index(':, -1'))).softmax(-1)),
);
const grid = landmarks.map((_, i) => perLayer.map((p) => p.index(`${i}, ${cityIds[i]}`).item()));
console.log('p(right city) by layer:');
landmarks.forEach(([l, c], i) => console.log(`  ${c.padEnd(11)} ${grid[i].map((p) => p.toFixed(2)).join('  ')}`));
const svg = heatmap(grid, {
  title: 'Logit lens: p(right city) at the last position, "<landmark> is in the city of"',
  rowLabels: landmarks.map(([l]) => l),
  colLabels: perLayer.map((_, layer) => String(layer)),
  xLabel: 'layer',
  colorScale: 'sequential',
  valueFormat: (v) => v.toFixed(2),
});
console.log(`wrote ${writePlot('plots/logit-lens-cities.svg', svg)}`);
