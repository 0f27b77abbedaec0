// Tutorial 9: an attention pattern, read from inside a module with `.source`: the softmax of
// each attention is `attn.source.softmax_0`, [batch, heads, seq, seq]. Prints where the last
// position looks in every head of every layer and draws the head that looks hardest at one
// earlier token as a heatmap (docs/attention-pattern.svg).
// Run: npx tsx examples/09-attention.ts [model-dir] [out.svg]   (default: models/tiny-facts)
import { LanguageModel } from '../src/index.js';
import { heatmap, writePlot } from '../src/plot.js';

const dir = process.argv[2] ?? 'models/tiny-facts';
const out = process.argv[3] ?? 'docs/attention-pattern.svg';
await using model = await LanguageModel.load(dir);
const prompt = 'The Eiffel Tower is in the city of';
const tokens = model.tokenizer.encode(prompt).map((id) => model.tokenizer.decode([id]));

// String(...source) lists a module's operations with their shapes: how to find the name
console.log(String(await model.trace(prompt, (m) => String(m.transformer.h[0].attn.source))).split('\n').filter((l) => /softmax|matmul/.test(l)).join('\n'));

const patterns = await model.trace(prompt, (m) => m.transformer.h.map((b: any) => b.attn.source.softmax_0.output.index('0')));
let best = { layer: 0, head: 0, key: 0, p: -1 };
patterns.forEach((pattern, layer) => {
  const last = pattern.index(':, -1'); // [heads, seq]: where the last position looks
  const heads = last.shape[0];
  const row: string[] = [];
  for (let h = 0; h < heads; h++) {
    const w = Array.from(last.index(String(h)).data() as Float32Array);
    const key = w.indexOf(Math.max(...w));
    row.push(`${JSON.stringify(tokens[key])} ${w[key].toFixed(2)}`);
    // the strongest look at an earlier word (position 0 is where idle heads rest)
    for (let k = 1; k < w.length - 1; k++) if (w[k] > best.p) best = { layer, head: h, key: k, p: w[k] };
  }
  console.log(`layer ${layer}: ${row.join(' | ')}`);
});
console.log(`strongest: layer ${best.layer} head ${best.head}, the last position on ${JSON.stringify(tokens[best.key])} (${best.p.toFixed(2)})`);

const grid = patterns[best.layer].index(String(best.head));
const svg = heatmap(grid, {
  title: `Attention pattern, layer ${best.layer} head ${best.head}: transformer.h[${best.layer}].attn.source.softmax_0`,
  rowLabels: tokens,
  colLabels: tokens,
  xLabel: 'key position',
  yLabel: 'query position',
  colorScale: 'sequential',
  valueFormat: (v) => v.toFixed(2),
});
console.log(`wrote ${writePlot(out, svg)}`);
