// Generation: greedy and steered generation token for token against eager PyTorch (full
// recomputation with forward hooks), with and without the key/value cache; sampling, stops,
// streaming and abort.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { ARCHS, MODELS, expectClose, oracle, py, type Arch } from './helpers.js';

const PY_LAYERS = { gpt2: 'model.transformer.h', llama: 'model.model.layers' };
const layersOf = (m: any) => ('transformer' in m ? m.transformer.h : m.model.layers);
const STEER = Array.from({ length: 64 }, (_, i) => 0.8 * Math.sin(i * 0.7));

function oracleGreedy(arch: Arch, prompts: number[][], n: number, eos: number, steer: boolean): number[][] {
  return oracle<number[][]>(arch, `
steer = torch.tensor(${py(STEER)})
if ${steer ? 'True' : 'False'}:
    def f(mod, i, o): o[0].add_(steer * 3)
    ${PY_LAYERS[arch]}[1].register_forward_hook(f)
out = []
for p in ${py(prompts)}:
    seq, gen = list(p), []
    for _ in range(${n}):
        t = int(model(*batch_inputs([seq]))[0][0, -1].argmax())
        gen.append(t); seq.append(t)
        if t == ${eos}: break
    out.append(gen)
result = out`);
}

describe.each(ARCHS)('%s generation', (arch) => {
  let model: LanguageModel;
  let prompts: number[][];
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS[arch], { device: 'cpu' });
    prompts = ['The Eiffel Tower is', 'Cats and dogs are friends in the park', 'Paris'].map((p) => model.tokenizer.encode(p));
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('the export has a key/value-cache graph', () => {
    expect(model.native.hasCache).toBe(true);
  });

  for (const useCache of [true, false]) {
    it(`greedy equals the eager oracle token for token (${useCache ? 'with' : 'without'} the cache), alone and batched`, async () => {
      const eos = model.manifest.specialTokens.eos!;
      const ref = oracleGreedy(arch, prompts, 12, eos, false);
      for (let i = 0; i < prompts.length; i++) {
        const out = await model.generate(prompts[i], { maxNewTokens: 12, useCache });
        expect(out.usedCache).toBe(useCache);
        expect(out.tokens).toEqual(ref[i]);
        expect(out.text).toBe(model.tokenizer.decode(ref[i]));
      }
      const batched = await model.generate(prompts, { maxNewTokens: 12, useCache });
      expect(batched.tokens).toEqual(ref);
    });

    it(`steering added at every step equals the oracle's hook (${useCache ? 'with' : 'without'} the cache)`, async () => {
      const eos = model.manifest.specialTokens.eos!;
      const ref = oracleGreedy(arch, prompts, 10, eos, true);
      const plain = oracleGreedy(arch, prompts, 10, eos, false);
      const steer = Tensor.from(STEER);
      const out = await model.generate(prompts, { maxNewTokens: 10, useCache }, (m, gen) => {
        gen.all((m) => {
          layersOf(m)[1].output[0].add_(steer.mul(3));
        });
      });
      expect(out.tokens).toEqual(ref);
      // the steering changed something, or this test could not fail
      expect(ref).not.toEqual(plain);
    });
  }

  it('reads at step 0 by default, arrays from gen.all, one value per gen.iter step', async () => {
    const p = prompts[0];
    const out = await model.generate(p, { maxNewTokens: 4 }, (m, gen) => {
      let each: any;
      gen.all((m) => {
        each = layersOf(m)[0].output[0].save();
      });
      const firstThree = gen.iter([0, 3], (m, step) => layersOf(m)[1].output[0].index(':, -1').sum().add(step));
      return { logits: m.output.logits, each, firstThree };
    });
    const ref = oracle(arch, `result = model(*batch_inputs([${py(p)}]))[0]`);
    expectClose(out.logits, ref);
    expect(out.each.length).toBe(out.steps);
    expect(out.each[0].shape).toEqual([1, p.length, 64]);
    expect(out.each[1].shape).toEqual([1, 1, 64]); // with the cache, one new position a step
    expect(out.firstThree.length).toBe(3);
    const seq = [...p, ...out.tokens];
    // step s reads the position of token p.length - 1 + s: compare with the oracle
    const refIter = oracle<number[]>(arch, `acts = []
${PY_LAYERS[arch]}[1].register_forward_hook(lambda mod, i, o: acts.append(o[0]))
model(*batch_inputs([${py(seq)}]))
result = [float(acts[0][0, ${p.length - 1} + s].sum() + s) for s in range(3)]`);
    out.firstThree.forEach((t: Tensor, s: number) => expect(t.item()).toBeCloseTo(refIter[s], 3));
  });
});

describe('sampling, stops, streaming, abort', () => {
  let model: LanguageModel;
  let greedy: number[];
  const prompt = 'The Eiffel Tower is';
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    greedy = (await model.generate(prompt, { maxNewTokens: 12 })).tokens;
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('sampling with a seed is reproducible; topK 1 and a tiny topP are greedy', async () => {
    const a = await model.generate(prompt, { maxNewTokens: 12, temperature: 1, seed: 42 });
    const b = await model.generate(prompt, { maxNewTokens: 12, temperature: 1, seed: 42 });
    const c = await model.generate(prompt, { maxNewTokens: 12, temperature: 1, seed: 43 });
    expect(a.tokens).toEqual(b.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    expect((await model.generate(prompt, { maxNewTokens: 12, temperature: 1.3, topK: 1, seed: 7 })).tokens).toEqual(greedy);
    expect((await model.generate(prompt, { maxNewTokens: 12, temperature: 1.3, topP: 1e-6, seed: 7 })).tokens).toEqual(greedy);
    // topK 5: every sampled token is among the 5 most likely at its step
    const k5 = await model.generate(prompt, { maxNewTokens: 6, temperature: 2, topK: 5, seed: 3 });
    const ids = model.tokenizer.encode(prompt);
    const top5 = oracle<number[][]>('gpt2', `seq = ${py(ids)}
out = []
for t in ${py(k5.tokens)}:
    out.append([int(x) for x in model(*batch_inputs([seq]))[0][0, -1].topk(5).indices]); seq.append(t)
result = out`);
    k5.tokens.forEach((t: number, i: number) => expect(top5[i]).toContain(t));
  });

  it('stops at a stop string or a stop id, keeping the token that completed it', async () => {
    const text = model.tokenizer.decode(greedy);
    const cutAt = 5;
    const stopId = greedy[cutAt];
    const byId = await model.generate(prompt, { maxNewTokens: 12, stop: stopId });
    expect(byId.tokens).toEqual(greedy.slice(0, greedy.indexOf(stopId) + 1));
    const target = model.tokenizer.decode(greedy.slice(0, 4));
    const stopString = target.slice(-2);
    const byString = await model.generate(prompt, { maxNewTokens: 12, stop: [stopString] });
    expect(byString.text.includes(stopString)).toBe(true);
    expect(text.startsWith(byString.text)).toBe(true);
    expect(byString.tokens.length).toBeLessThanOrEqual(4);
  });

  it('streams tokens with onToken and as an async iterator', async () => {
    const seen: number[] = [];
    const out = await model.generate(prompt, { maxNewTokens: 8, onToken: (e) => seen.push(e.tokens[0]) });
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual(out.tokens);
    const stream = model.stream(prompt, { maxNewTokens: 8 });
    const fromIter: number[] = [];
    for await (const e of stream) fromIter.push(e.tokens[0]);
    expect(fromIter).toEqual((await stream.result).tokens);
    expect(fromIter).toEqual(greedy.slice(0, 8));
  });

  it('abort mid-generation rejects with the reason, and the model stays usable', async () => {
    const ctrl = new AbortController();
    const reason = new Error('enough');
    let steps = 0;
    const p = model.generate(prompt, { maxNewTokens: 100, signal: ctrl.signal, onToken: () => { if (++steps === 2) ctrl.abort(reason); } });
    await expect(p).rejects.toBe(reason);
    expect(steps).toBeLessThan(100);
    expect((await model.generate(prompt, { maxNewTokens: 12 })).tokens).toEqual(greedy);
  });

  it('bad options are clear errors', async () => {
    await expect(model.generate(prompt, { maxNewTokens: 1000 })).rejects.toThrow(/exceeds the model's 128 positions/);
    await expect(model.generate(prompt, { temperature: -1 })).rejects.toThrow(/temperature must be a number >= 0/);
    await expect(model.generate(prompt, { topP: 2 })).rejects.toThrow(/topP must be in \(0, 1\]/);
    await expect(model.generate(prompt, { stop: [''] })).rejects.toThrow(/stop must hold/);
    await expect(model.generate(prompt, {}, (m, gen) => gen.iter([3, 1], () => 0))).rejects.toThrow(/gen.iter: range/);
  });
});
