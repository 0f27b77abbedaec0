// Tutorial 3: cross-prompt sharing, two invokes in one forward: the first prompt's last position
// at one layer replaces the second's. Run: npx tsx examples/03-cross-prompt.ts [model-dir] [layer]
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/tiny-facts';
const layer = Number(process.argv[3] ?? 1);
await using model = await LanguageModel.load(dir);
const [a, b] = ['The Eiffel Tower is in the city of', 'The Colosseum is in the city of'];
const r = await model.trace((tracer) => {
  let eiffel: any;
  tracer.invoke(a, (m) => {
    eiffel = m.transformer.h[layer].output[0].index(':, -1');
  });
  const own = tracer.invoke(b, (m) => m.output.logits.index(':, -1').softmax(-1));
  const shared = tracer.invoke(b, (m) => {
    m.transformer.h[layer].output[0].index(':, -1').copy_(eiffel);
    return m.output.logits.index(':, -1').softmax(-1);
  });
  return { own, shared };
});
const top = (p: typeof r.own) => {
  const t = p.index('0').max(-1);
  return `${JSON.stringify(model.tokenizer.decode([t.indices.item()]))} (p=${t.values.item().toFixed(3)})`;
};
console.log(`${JSON.stringify(b)} -> ${top(r.own)}`);
console.log(`the same, with layer ${layer}'s last position from ${JSON.stringify(a)} -> ${top(r.shared)}`);
