// Tutorial 1: activations and logits. Run: npx tsx examples/01-activations.ts [model-dir]
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/gpt2';
await using model = await LanguageModel.load(dir);
console.log(`loaded ${model.manifest.architecture} on ${model.device} (${model.dtype}), ${model.modulePaths().length} modules`);

const prompt = 'The capital of France is';
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
