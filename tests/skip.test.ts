// `.skip(value?)` (section 13 of the API): a skipped module does not run and its output is the
// value (by default its first input), against eager PyTorch whose module's output a forward hook
// replaces the same way (never model.pt).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { MODELS, expectClose, oracle, py } from './helpers.js';

describe('gpt2 skip', () => {
  let model: LanguageModel;
  let ids: number[];
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
  });
  afterAll(async () => {
    await model.dispose();
  });

  const identity = (block: number) => `model.transformer.h[${block}].register_forward_hook(lambda mod, i, o: (i[0],) + tuple(o[1:]))\n`;

  it('skipping block 3 equals the eager model with block 3 replaced by identity', async () => {
    const r = await model.trace(ids, (m) => {
      m.transformer.h[3].skip();
      return { logits: m.output.logits, out: m.transformer.h[3].output[0], input: m.transformer.h[3].input };
    });
    const ref = oracle('gpt2', identity(3) + `result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(r.logits, ref);
    expect(Array.from(r.out.data() as Float32Array)).toEqual(Array.from(r.input.data() as Float32Array));
    const plain = oracle('gpt2', `result = model(*batch_inputs([${py(ids)}]))[0]`);
    expect(() => expectClose(r.logits, plain)).toThrow(); // skipping changed the answer
  });

  it('the skipped module does not run: nothing inside it fires', async () => {
    await expect(
      model.trace(ids, (m) => {
        m.transformer.h[3].skip();
        return m.transformer.h[3].attn.output[0];
      }),
    ).rejects.toThrow(/site 'transformer\.h\.3\.attn:output:0' never fired/);
    await expect(
      model.trace(ids, (m) => {
        m.transformer.h[3].skip();
        return m.transformer.h[3].attn.source.softmax_0.output;
      }),
    ).rejects.toThrow(/never fired/);
    // and the model is usable after
    const after = await model.trace(ids, (m) => m.transformer.h[3].attn.output[0]);
    expect(after.shape).toEqual([1, ids.length, 64]);
  });

  it('skip(value): the output is the value (a proxy, a Tensor, a number)', async () => {
    const r = await model.trace(ids, (m) => {
      m.transformer.h[3].skip(m.transformer.h[1].output[0]);
      return m.output.logits;
    });
    const ref = oracle('gpt2', `acts = {}
model.transformer.h[1].register_forward_hook(lambda mod, i, o: acts.__setitem__('h1', o[0]))
model.transformer.h[3].register_forward_hook(lambda mod, i, o: (acts['h1'],) + tuple(o[1:]))
result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(r, ref);
    const mlp = await model.trace(ids, (m) => {
      m.transformer.h[5].mlp.skip(0);
      return m.output.logits;
    });
    const refMlp = oracle('gpt2', `model.transformer.h[5].mlp.register_forward_hook(lambda mod, i, o: torch.zeros_like(o))
result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(mlp, refMlp);
    const t = Tensor.from(Array.from({ length: 64 }, (_, i) => Math.cos(i)));
    const ln = await model.trace(ids, (m) => {
      m.transformer.ln_f.skip(t);
      return m.output.logits;
    });
    const refLn = oracle('gpt2', `t = torch.tensor(${py(Array.from({ length: 64 }, (_, i) => Math.cos(i)))})
model.transformer.ln_f.register_forward_hook(lambda mod, i, o: t.expand_as(o).clone())
result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(ln, refLn);
  });

  it('skip inside an invoke applies to that invoke’s rows only', async () => {
    const other = model.tokenizer.encode('Cats and dogs are friends in the park');
    const r = await model.trace((tracer) => {
      const a = tracer.invoke(ids, (m) => m.output.logits);
      const b = tracer.invoke(other, (m) => {
        m.transformer.h[3].skip();
        return m.output.logits;
      });
      return { a, b };
    });
    const ref = oracle('gpt2', `def f(mod, i, o):
    h = o[0].clone(); h[1:] = i[0][1:]
    return (h,) + tuple(o[1:])
model.transformer.h[3].register_forward_hook(f)
out = model(*batch_inputs([${py(ids)}, ${py(other)}]))[0]
result = {'a': out[:1], 'b': out[1:]}`);
    expectClose(r.a, ref.a);
    expectClose(r.b, ref.b);
  });

  it('skip holds at every generation step (with and without the key/value cache)', async () => {
    const eos = model.manifest.specialTokens.eos!;
    const ref = oracle<number[]>('gpt2', identity(3) + `seq, gen = ${py(ids)}, []
for _ in range(6):
    t = int(model(*batch_inputs([seq]))[0][0, -1].argmax())
    gen.append(t); seq.append(t)
    if t == ${eos}: break
result = gen`);
    for (const useCache of [true, false]) {
      const out = await model.generate(ids, { maxNewTokens: 6, useCache }, (m, gen) => {
        gen.all((m) => m.transformer.h[3].skip());
      });
      expect(out.tokens).toEqual(ref);
    }
  });

  it('clear errors: the root, a module whose input cannot stand for its output, a value of the wrong shape', async () => {
    await expect(model.trace(ids, (m) => m.skip())).rejects.toThrow(/the root module cannot be skipped/);
    await expect(model.trace(ids, (m) => m.lm_head.skip())).rejects.toThrow(/first input of 'lm_head' .* cannot stand for its output .*pass the value/);
    await expect(model.trace(ids, (m) => m.transformer.wte.skip())).rejects.toThrow(/cannot stand for its output/);
    await expect(
      model.trace(ids, (m) => {
        m.transformer.h[2].skip(Tensor.from([1, 2, 3]));
        return m.output.logits;
      }),
    ).rejects.toThrow(/^write at .*skip\.test\.ts:\d+:\d+: cannot replace a value of shape \[1, \d+, 64\] with shape \[3\]/);
    const ok = await model.trace(ids, (m) => m.output.logits);
    expect(ok.shape).toEqual([1, ids.length, 512]);
  });
});

describe('llama skip', () => {
  it('skipping a decoder layer equals the eager model with that layer as identity', async () => {
    const model = await LanguageModel.load(MODELS.llama, { device: 'cpu' });
    try {
      const ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
      const r = await model.trace(ids, (m) => {
        m.model.layers[1].skip();
        return m.output.logits;
      });
      const ref = oracle('llama', `model.model.layers[1].register_forward_hook(lambda mod, i, o: (i[0],) + tuple(o[1:]))
result = model(*batch_inputs([${py(ids)}]))[0]`);
      expectClose(r, ref);
    } finally {
      await model.dispose();
    }
  });
});
