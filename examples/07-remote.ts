// Tutorial 4 (remote execution): the same interpretability code on a model that lives on a
// server. This script starts nothing: run a server first, e.g.
//   npx torchsight serve models/gpt2 --port 8080
// then: npx tsx examples/07-remote.ts [url] [model-name]   (default http://127.0.0.1:8080 gpt2)
// A key, when the server has --keys, comes from TORCHSIGHT_API_KEY.
import { LanguageModel } from '../src/index.js';

const url = process.argv[2] ?? 'http://127.0.0.1:8080';
const name = process.argv[3] ?? 'gpt2';

// no weights here: the module tree, the manifest and the tokenizer come from the server
const model = await LanguageModel.remote(url, name);
console.log(`${name} at ${url}: ${model.modulePaths().length} modules, vocabulary of ${model.manifest.vocabSize}`);

// one remote trace: a layer's hidden state and the logits, run on the server
const prompt = 'The Eiffel Tower is in the city of';
const { hidden, logits } = await model.trace(prompt, (m) => ({
  hidden: m.transformer.h[5].output[0],
  logits: m.output.logits,
}));
const next = logits.index('0, -1').argmax().item();
console.log(`hidden state of layer 5: shape [${hidden.shape.join(', ')}]; next token: ${JSON.stringify(model.tokenizer.decode([next]))}`);

// a session: several traces as one request; a value from the first flows into the next on the server
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
const top = (t: typeof before) => JSON.stringify(model.tokenizer.decode([t.argmax().item()]));
console.log(`session: next token before patching ${top(before)}, after ${top(after)}`);

// generation streams its tokens back as they are made
const out = await model.generate('Once upon a time', { maxNewTokens: 12, onToken: () => process.stdout.write('.') });
console.log(`\ngenerated: ${JSON.stringify(out.text)}`);

// a job that does not block: its id at once, its result later (model.job(id) reattaches elsewhere)
const job = await model.trace(prompt, (m) => m.output.logits.index('0, -1').softmax(-1), { blocking: false });
console.log(`job ${job.id}: ${(await job.status()).state}`);
const probs = await job.result();
console.log(`job ${job.id}: done, top probability ${probs.max().item().toFixed(4)}`);
