// Tutorial 2: activation patching, then a per-layer patching sweep.
// Run: npx tsx examples/02-patching.ts [model-dir]
import { LanguageModel } from '../src/index.js';

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
