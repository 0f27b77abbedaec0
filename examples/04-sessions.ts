// Tutorial 4: a session, several traces as one request: a value from one trace is used in the
// next without coming back to JavaScript. Here, the seed's function vectors: the mean last-position
// activation of in-context antonym prompts, added at one layer to zero-shot prompts ("hot:"), on
// words the vector was not built from. Run: npx tsx examples/04-sessions.ts [model-dir] [layer]
import { LanguageModel } from '../src/index.js';

const dir = process.argv[2] ?? 'models/tiny-facts';
const layer = Number(process.argv[3] ?? 1);
await using model = await LanguageModel.load(dir);

// the antonym pairs of the model's corpus: the vector from the first 30, the table on the others
const pairs = `old:young dark:bright up:down hot:cold big:small fast:slow happy:sad open:closed inside:outside
minimum:maximum win:lose early:late rich:poor strong:weak full:empty high:low hard:soft wet:dry long:short
loud:quiet good:bad true:false left:right first:last push:pull buy:sell day:night black:white above:below
accept:reject victory:defeat guilty:innocent visible:invisible before:after begin:end clean:dirty
cheap:expensive deep:shallow friend:enemy give:take north:south east:west on:off over:under question:answer
remember:forget safe:dangerous thick:thin tight:loose top:bottom wide:narrow always:never increase:decrease
future:past awake:asleep appear:vanish love:hate sweet:sour pessimist:optimist`
  .split(/\s+/)
  .map((p) => p.split(':'));
const antonym = new Map(pairs.flatMap(([a, b]) => [[a, b], [b, a]]));
const words = (from: number, to: number) => pairs.slice(from, to).flat();
const [buildWords, testWords] = [words(0, 30), words(30, pairs.length)];
// five demonstrations, spread over the list, then the query
const icl = (list: string[], i: number) => {
  const step = Math.floor(list.length / 5);
  const demos = [0, 1, 2, 3, 4].map((k) => list[(i + 1 + k * step) % list.length]);
  return demos.map((w) => `${w}:${antonym.get(w)}, `).join('') + `${list[i]}:`;
};

const { fewShot, without, withFv } = await model.session((s) => {
  const fv = s.trace(buildWords.map((_, i) => icl(buildWords, i)), (m) =>
    m.transformer.h[layer].output[0].index(':, -1').mean(0),
  );
  const zeroShot = testWords.map((w) => `${w}:`);
  return {
    fewShot: s.trace(testWords.map((_, i) => icl(testWords, i)), (m) => m.output.logits.index(':, -1').argmax(-1)),
    without: s.trace(zeroShot, (m) => m.output.logits.index(':, -1').argmax(-1)),
    withFv: s.trace(zeroShot, (m) => {
      m.transformer.h[layer].output[0].index(':, -1').add_(fv); // the vector, never back in JS
      return m.output.logits.index(':, -1').argmax(-1);
    }),
  };
});
const decode = (t: typeof without) => Array.from(t.data(), (id) => model.tokenizer.decode([Number(id)]));
const [few, zero, fvd] = [decode(fewShot), decode(without), decode(withFv)];
const acc = (got: string[]) => got.filter((g, i) => g === antonym.get(testWords[i])).length / testWords.length;
console.log(`function vector: layer ${layer}, built from ${buildWords.length} five-shot prompts; ${testWords.length} other words`);
console.log('prompt        without     with fv     correct');
testWords.slice(0, 16).forEach((w, i) =>
  console.log(`${JSON.stringify(`${w}:`).padEnd(13)} ${zero[i].padEnd(11)} ${fvd[i].padEnd(11)} ${antonym.get(w)}`),
);
console.log(`... ${testWords.length - 16} more`);
console.log(`antonym accuracy: five-shot ${acc(few).toFixed(2)}, zero-shot ${acc(zero).toFixed(2)}, zero-shot + function vector ${acc(fvd).toFixed(2)}`);
