// Tutorial 4: a session: several traces as one request; a value from one trace is used in
// the next without coming back to JavaScript. Run: npx tsx examples/04-sessions.ts [model-dir]
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/gpt2';
await using model = await LanguageModel.load(dir);
const a = model.tokenizer.encode('Paris is a city in France');
const b = model.tokenizer.encode('Rome is a city in Italy');
const n = Math.min(a.length, b.length);
const { before, after } = await model.session((s) => {
  const act = s.trace(a.slice(0, n), (m) => m.transformer.h[4].output[0]);
  const before = s.trace(b.slice(0, n), (m) => m.output.logits.index('0, -1').softmax(-1));
  const after = s.trace(b.slice(0, n), (m) => {
    m.transformer.h[4].output[0].copy_(act);
    return m.output.logits.index('0, -1').softmax(-1);
  });
  return { before, after };
});
const top = (t: typeof before) => model.tokenizer.decode([t.argmax().item()]);
console.log(`next token before patching: ${JSON.stringify(top(before))}, after: ${JSON.stringify(top(after))}`);
console.log(`total variation between the two: ${after.sub(before).abs().sum().item() / 2}`);
