// tracer.cache(): every module's output and inputs in one call, against eager PyTorch's
// forward hooks on the same weights; filters, invokes, sessions and generation.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { MODELS, expectClose, oracle, py } from './helpers.js';

let model: LanguageModel;
let ids: number[];
let other: number[];
beforeAll(async () => {
  model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
  ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
  other = model.tokenizer.encode('Cats sleep');
});
afterAll(async () => {
  await model.dispose();
});

/** Eager forward hooks on every block (and ln_f): each output[0] and input[0]. */
function eagerBlocks(prompts: number[][]) {
  return oracle<{ out: any[]; inp: any[]; lnf: any }>('gpt2', `
out, inp, lnf = [None] * 12, [None] * 12, {}
for i, b in enumerate(model.transformer.h):
    def f(mod, a, o, i=i):
        out[i] = o[0]; inp[i] = a[0]
    b.register_forward_hook(f)
model.transformer.ln_f.register_forward_hook(lambda mod, a, o: lnf.update(o=o))
model(*batch_inputs(${py(prompts)}))
result = {'out': out, 'inp': inp, 'lnf': lnf['o']}`);
}

describe('tracer.cache', () => {
  it("every block's output and input equal eager forward hooks'", async () => {
    const cache = await model.trace(ids, (_m, tracer) => tracer.cache());
    const eager = eagerBlocks([ids]);
    for (let i = 0; i < 12; i++) {
      const e = cache[`transformer.h.${i}`];
      expect(Array.isArray(e.output)).toBe(true); // a block returns a tuple
      expect(e.output[0]).toBeInstanceOf(Tensor);
      expectClose(e.output[0], eager.out[i]);
      expectClose(e.inputs[0], eager.inp[i]);
    }
    expectClose(cache['transformer.ln_f'].output, eager.lnf);
    // every module that ran, the root and the never-called ModuleList excepted
    expect(Object.keys(cache)).toContain('transformer.h.3.attn.c_attn');
    expect(Object.keys(cache)).not.toContain('transformer.h');
    expect(Object.keys(cache)).not.toContain('');
  });

  it('a string filter is a module with its submodules; a RegExp tests paths; an array names exact paths', async () => {
    const r = await model.trace(ids, (_m, tracer) => ({
      sub: tracer.cache('transformer.h.3'),
      re: tracer.cache(/^transformer\.h\.\d+\.mlp$/, { inputs: false }),
      list: tracer.cache(['transformer.h.0', 'transformer.ln_f']),
    }));
    expect(Object.keys(r.sub).every((p) => p === 'transformer.h.3' || p.startsWith('transformer.h.3.'))).toBe(true);
    expect(Object.keys(r.sub)).toContain('transformer.h.3.mlp.c_fc');
    expect(Object.keys(r.sub)).not.toContain('transformer.h.30'); // a prefix at a dot only
    expect(Object.keys(r.re)).toEqual(Array.from({ length: 12 }, (_, i) => `transformer.h.${i}.mlp`));
    expect(r.re['transformer.h.0.mlp'].inputs).toEqual([]);
    expect(Object.keys(r.list)).toEqual(['transformer.h.0', 'transformer.ln_f']);
    const eager = eagerBlocks([ids]);
    expectClose(r.list['transformer.h.0'].output[0], eager.out[0]);
    expectClose(r.list['transformer.ln_f'].output, eager.lnf);
  });

  it('bad filters name what is wrong', async () => {
    await expect(model.trace(ids, (_m, t) => t.cache(['transformer.h.0', 'transformer.hh.1']))).rejects.toThrow(/module 'transformer.hh' not found/);
    await expect(model.trace(ids, (_m, t) => t.cache('transformer.hx'))).rejects.toThrow(/tracer.cache: module 'transformer.hx' not found; did you mean 'transformer.h'/);
    await expect(model.trace(ids, (_m, t) => t.cache(['transformer.h']))).rejects.toThrow(/'transformer.h' has no values to cache/);
    await expect(model.trace(ids, (_m, t) => t.cache(42 as never))).rejects.toThrow(/filter must be a module path, a RegExp or an array/);
  });

  it('the cache is usable in the graph while recording, and unsaved reads stay out of it', async () => {
    const r = await model.trace(ids, (m, tracer) => {
      const c = tracer.cache(['transformer.h.2']);
      return { n: c['transformer.h.2'].output[0].norm(), direct: m.transformer.h[2].output[0] };
    });
    expect(r.n.item()).toBeCloseTo(r.direct.norm().item(), 3);
  });

  it('inside an invoke it holds that invoke\'s rows; outside any, the whole batch', async () => {
    const r = await model.trace((tracer) => {
      const a = tracer.invoke(ids, () => tracer.cache(['transformer.h.5']));
      const b = tracer.invoke(other, () => tracer.cache(['transformer.h.5']));
      const all = tracer.cache(['transformer.h.5']);
      return { a, b, all };
    });
    const eager = eagerBlocks([ids, other]);
    const batch = eager.out[5];
    expectClose(r.all['transformer.h.5'].output[0], batch);
    expect(r.a['transformer.h.5'].output[0].shape).toEqual([1, ids.length, 64]);
    // invoke rows equal the same rows of the eager padded batch
    const rowOf = (t: { shape: number[]; data: unknown[] }, i: number) => ({ shape: [1, ...t.shape.slice(1)], data: t.data.slice(i * (t.data.length / t.shape[0]), (i + 1) * (t.data.length / t.shape[0])) });
    expectClose(r.a['transformer.h.5'].output[0], rowOf(batch, 0) as never);
    expectClose(r.b['transformer.h.5'].output[0], rowOf(batch, 1) as never);
  });

  it('entries resolve even when the cache is not returned, and in a session', async () => {
    let kept: any;
    await model.trace(ids, (_m, tracer) => {
      kept = tracer.cache('transformer.ln_f');
    });
    expectClose(kept['transformer.ln_f'].output, eagerBlocks([ids]).lnf);
    const s = await model.session((s) => {
      const c = s.trace(ids, (_m, t) => t.cache(['transformer.h.1']));
      const d = s.trace(other, (_m, t) => t.cache(['transformer.h.1']));
      return { c, d };
    });
    expectClose(s.c['transformer.h.1'].output[0], eagerBlocks([ids]).out[1]);
    expectClose(s.d['transformer.h.1'].output[0], eagerBlocks([other]).out[1]);
  });

  it('in generation: at step 0 in the body, at every step inside gen.all', async () => {
    const out = await model.generate(ids, { maxNewTokens: 3 }, (_m, gen) => {
      let every: any;
      gen.all(() => {
        every = gen.cache(['transformer.ln_f']);
      });
      return { first: gen.cache(['transformer.h.0']), every };
    });
    expectClose(out.first['transformer.h.0'].output[0], eagerBlocks([ids]).out[0]);
    const steps = out.every['transformer.ln_f'].output as Tensor[];
    expect(steps.length).toBe(3);
    expectClose(steps[0], eagerBlocks([ids]).lnf);
    // step 1 sees the new token only (key/value cache), at the end of the prompt plus one
    const seq = [...ids, (out.tokens as number[])[0]];
    const eager = eagerBlocks([seq]).lnf;
    const last = { shape: [1, 1, 64], data: eager.data.slice(-64) };
    expectClose(steps[1].shape[1] === 1 ? steps[1] : steps[1].index(':, -1:'), last as never);
  });
});
