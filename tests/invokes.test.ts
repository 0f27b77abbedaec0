// Several invokes in one forward: rows of one left-padded batch, reads narrowed to each
// invoke's rows, writes into them; a batched trace equals each prompt traced alone.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { ARCHS, MODELS, expectClose, oracle, py, type Arch } from './helpers.js';

const layersOf = (arch: Arch, m: any) => (arch === 'gpt2' ? m.transformer.h : m.model.layers);

// a small seeded generator, so the property test is reproducible
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe.each(ARCHS)('%s invokes', (arch) => {
  let model: LanguageModel;
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS[arch], { device: 'cpu' });
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('property: a batched trace of prompts of different lengths equals each prompt traced alone', async () => {
    const rand = rng(arch === 'gpt2' ? 7 : 11);
    for (let round = 0; round < 4; round++) {
      const n = 2 + Math.floor(rand() * 3);
      const prompts = Array.from({ length: n }, () => Array.from({ length: 1 + Math.floor(rand() * 12) }, () => Math.floor(rand() * 511)));
      const layer = Math.floor(rand() * 4);
      const batched = await model.trace((tracer) =>
        prompts.map((p) =>
          tracer.invoke(p, (m) => ({ act: layersOf(arch, m)[layer].output[0], mlp: layersOf(arch, m)[layer].mlp.output, logits: m.output.logits })),
        ),
      );
      for (let i = 0; i < n; i++) {
        const alone = await model.trace(prompts[i], (m) => ({ act: layersOf(arch, m)[layer].output[0], mlp: layersOf(arch, m)[layer].mlp.output, logits: m.output.logits }));
        const len = prompts[i].length;
        for (const key of ['act', 'mlp', 'logits'] as const) {
          const b = batched[i][key] as Tensor;
          const seq = b.shape[1];
          expect(b.shape[0]).toBe(1);
          // the invoke's rows, at its real (non-pad) positions
          const real = b.index(`:, ${seq - len}:`);
          const a = alone[key] as Tensor;
          expectClose(real, { shape: a.shape, data: Array.from(a.data() as Float32Array) }, 1e-4, 1e-4);
        }
      }
    }
  });

  it('a write in one invoke changes only its rows; later invokes read values from earlier ones', async () => {
    const a = model.tokenizer.encode('The Eiffel Tower is tall');
    const b = model.tokenizer.encode('Cats sleep a lot');
    const out = await model.trace((tracer) => {
      const first = tracer.invoke(a, (m) => {
        layersOf(arch, m)[0].mlp.output = 0;
        return { mlp: layersOf(arch, m)[0].mlp.output, h1: layersOf(arch, m)[1].output[0], logits: m.output.logits };
      });
      const second = tracer.invoke(b, (m) => {
        const h = layersOf(arch, m)[2].output[0];
        h.index(':, -1').add_(first.h1.index(':, -1, 0:1'));
        return { logits: m.output.logits };
      });
      return { first, second };
    });
    const ref = oracle(arch, `L = ${arch === 'gpt2' ? 'model.transformer.h' : 'model.model.layers'}
store = {}
def zero_row0(mod, i, o):
    o = o.clone(); o[0] = 0; store['mlp'] = o[0:1].clone(); return o
L[0].mlp.register_forward_hook(zero_row0)
L[1].register_forward_hook(lambda mod, i, o: store.__setitem__('h1', o[0][0:1].clone()))
def add(mod, i, o): o[0][1, -1] += store['h1'][0, -1, 0:1]
L[2].register_forward_hook(add)
logits = model(*batch_inputs(${py([a, b])}))[0]
result = {'mlp': store['mlp'], 'first': logits[0:1], 'second': logits[1:2], 'h1': store['h1']}`);
    expectClose(out.first.mlp, ref.mlp);
    expectClose(out.first.logits, ref.first);
    expectClose(out.first.h1, ref.h1);
    expectClose(out.second.logits, ref.second);
  });
});
