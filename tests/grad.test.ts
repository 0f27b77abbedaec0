// Gradients: `.backward()` on a scalar metric and `.grad` of the values it depends on, read and
// patched during the backward, against eager PyTorch (tensor hooks and retain_grad on the same
// weights); invokes, sessions, errors naming the user's line, and no autograd left behind.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { ARCHS, MODELS, expectClose, oracle, py, sameValues, type Arch } from './helpers.js';

const layersOf = (arch: Arch, m: any) => (arch === 'gpt2' ? m.transformer.h : m.model.layers);

// In the oracle: watch(i, name, patch) keeps block i's output (its .grad retained) as
// store[name], with `patch` as a tensor hook on it first; run(ids, metric) runs the forward with
// autograd and backward()s metric(logits).
const PRELUDE = `
blocks = model.transformer.h if hasattr(model, 'transformer') else model.model.layers
store = {}
def watch(i, name, patch=None):
    def fh(mod, inp, out):
        h = out[0] if isinstance(out, tuple) else out
        if patch is not None: h.register_hook(patch)
        h.retain_grad()
        store[name] = h
    return blocks[i].register_forward_hook(fh)
def run(ids, metric):
    with torch.enable_grad():
        logits = model(*batch_inputs(ids))[0]
        metric(logits).backward()
    return logits
`;

const A = [5, 17, 99, 3, 250, 7, 41];
const B = [300, 12, 9, 77];

describe.each(ARCHS)('%s gradients', (arch) => {
  let model: LanguageModel;
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS[arch], { device: 'cpu' });
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('the grad of a logit difference w.r.t. a layer output equals eager autograd', async () => {
    const r = await model.trace(A, (m) => {
      const h = layersOf(arch, m)[2].output[0];
      const logits = m.output.logits;
      logits.index('0, -1, 259').sub(logits.index('0, -1, 84')).backward();
      return { h, grad: h.grad, logits };
    });
    const ref = oracle(arch, `${PRELUDE}
watch(2, 'h')
logits = run(${py([A])}, lambda l: l[0, -1, 259] - l[0, -1, 84])
result = {'h': store['h'], 'grad': store['h'].grad, 'logits': logits}`);
    expectClose(r.h, ref.h);
    expectClose(r.logits, ref.logits);
    expectClose(r.grad, ref.grad, 1e-5, 1e-4);
    expect(Math.max(...Array.from(r.grad.abs().data() as Float32Array))).toBeGreaterThan(1e-4); // not a zero grad
  });

  it('a patched .grad at a later layer flows upstream to an earlier layer\'s grad', async () => {
    const r = await model.trace(A, (m) => {
      const h1 = layersOf(arch, m)[1].output[0];
      const h4 = layersOf(arch, m)[2].output[0];
      const h6 = layersOf(arch, m)[3].output[0];
      m.output.logits.index('0, -1').logSoftmax(-1).index('42').backward();
      h6.grad.index(':, -1').zero_(); // in place, on a view of the gradient
      h4.grad = h4.grad.mul(3); // replaced
      return { g1: h1.grad, g4: h4.grad, g6: h6.grad };
    });
    const ref = oracle(arch, `${PRELUDE}
def zero_last(g):
    g = g.clone(); g[:, -1] = 0; return g
watch(1, 'h1'); watch(2, 'h4', lambda g: g * 3); watch(3, 'h6', zero_last)
run(${py([A])}, lambda l: torch.log_softmax(l[0, -1], -1)[42])
result = {'g1': store['h1'].grad, 'g4': store['h4'].grad, 'g6': store['h6'].grad}`);
    expectClose(r.g6, ref.g6, 1e-5, 1e-4);
    expectClose(r.g4, ref.g4, 1e-5, 1e-4);
    expectClose(r.g1, ref.g1, 1e-5, 1e-4);
    // and the patch mattered: unpatched, layer 1's grad differs
    const plain = await model.trace(A, (m) => {
      const h1 = layersOf(arch, m)[1].output[0];
      m.output.logits.index('0, -1').logSoftmax(-1).index('42').backward();
      return h1.grad;
    });
    const diff = plain.sub(r.g1).abs().max().item() as number;
    expect(diff).toBeGreaterThan(1e-4);
  });

  it('two invokes with a metric each: each invoke\'s grads equal its prompt alone', async () => {
    const targets = [[259, 84], [11, 400]];
    const out = await model.trace((tracer) =>
      [A, B].map((p, k) =>
        tracer.invoke(p, (m) => {
          const h = layersOf(arch, m)[3].output[0];
          const logits = m.output.logits;
          logits.index(`0, -1, ${targets[k][0]}`).sub(logits.index(`0, -1, ${targets[k][1]}`)).backward();
          return { g: h.grad, mlp: layersOf(arch, m)[1].mlp.output.grad };
        }),
      ),
    );
    const ref = oracle(arch, `${PRELUDE}
out = []
for ids, (a, b) in zip(${py([A, B])}, ${py(targets)}):
    store.clear()
    hs = [watch(3, 'h')]
    def keep(mod, inp, o): o.retain_grad(); store['mlp'] = o
    hs.append(blocks[1].mlp.register_forward_hook(keep))
    run([ids], lambda l: l[0, -1, a] - l[0, -1, b])
    out.append({'g': store['h'].grad, 'mlp': store['mlp'].grad})
    for h in hs: h.remove()
result = out`);
    [A, B].forEach((p, k) => {
      for (const key of ['g', 'mlp'] as const) {
        const t = out[k][key] as Tensor;
        expect(t.shape[0]).toBe(1);
        expectClose(t.index(`:, ${t.shape[1] - p.length}:`), ref[k][key], 1e-5, 1e-4); // its real (non-pad) positions
      }
    });
  });

  it('a session: each trace its own backward, values flowing from a no-grad trace into a grad trace', async () => {
    const r = await model.session((s) => {
      const a = s.trace(A, (m) => layersOf(arch, m)[2].output[0].save());
      const b = s.trace(B, (m) => {
        const h1 = layersOf(arch, m)[1].output[0];
        layersOf(arch, m)[2].output[0].index(':, -1').copy_(a.index(':, -1'));
        m.output.logits.index('0, -1, 7').backward();
        return h1.grad;
      });
      const c = s.trace(A, (m) => {
        const h5 = layersOf(arch, m)[3].output[0];
        m.output.logits.index('0, -1, 8').backward();
        return h5.grad;
      });
      return { b, c };
    });
    const ref = oracle(arch, `${PRELUDE}
with torch.no_grad():
    hA = {}
    hk = blocks[2].register_forward_hook(lambda mod, i, o: hA.__setitem__('h', (o[0] if isinstance(o, tuple) else o).clone()))
    model(*batch_inputs(${py([A])})); hk.remove()
def patch(mod, i, o):
    h = o[0] if isinstance(o, tuple) else o
    h[:, -1] = hA['h'][:, -1]
hk = blocks[2].register_forward_hook(patch); w = watch(1, 'h1')
run(${py([B])}, lambda l: l[0, -1, 7]); hk.remove(); w.remove()
b = store['h1'].grad
watch(3, 'h5')
run(${py([A])}, lambda l: l[0, -1, 8])
result = {'b': b, 'c': store['h5'].grad}`);
    expectClose(r.b, ref.b, 1e-5, 1e-4);
    expectClose(r.c, ref.c, 1e-5, 1e-4);
  });

  it('a metric from a middle layer, the forward stopped after it (tracer.stop())', async () => {
    const r = await model.trace(B, (m, tracer) => {
      const h0 = layersOf(arch, m)[0].output[0];
      layersOf(arch, m)[2].output[0].pow(2).mean().backward();
      tracer.stop();
      return h0.grad;
    });
    const ref = oracle(arch, `${PRELUDE}
watch(0, 'h0')
out = {}
hk = blocks[2].register_forward_hook(lambda mod, i, o: out.__setitem__('h2', o[0] if isinstance(o, tuple) else o))
with torch.enable_grad():
    model(*batch_inputs(${py([B])}))
    out['h2'].pow(2).mean().backward()
result = store['h0'].grad`);
    expectClose(r, ref, 1e-6, 1e-4);
  });

  it('a trace after grad traces gives exactly the numbers it gave before, and nothing requires grad', async () => {
    const plain = (m: any) => ({ h: layersOf(arch, m)[2].output[0], logits: m.output.logits });
    const before = await model.trace(A, plain);
    await model.trace(A, (m) => {
      const h = layersOf(arch, m)[2].output[0];
      m.output.logits.index('0, -1, 3').backward();
      h.grad = 0;
      return h.grad;
    });
    const after = await model.trace(A, plain);
    sameValues(after.logits, before.logits);
    sameValues(after.h, before.h);
  });
});

describe('gradient errors name the user\'s line and leave the model usable', () => {
  let model: LanguageModel;
  let baseline: Tensor;
  const check = async () => sameValues(await model.trace(A, (m) => m.output.logits), baseline);
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    baseline = await model.trace(A, (m) => m.output.logits);
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('a metric that does not depend on the module', async () => {
    // computed from layer 1, before layer 5 runs: nothing in it requires grad
    await expect(
      model.trace(A, (m) => {
        const h5 = m.transformer.h[5].output[0];
        m.transformer.h[1].output[0].sum().backward();
        return h5.grad;
      }),
    ).rejects.toThrow(/^backward at grad\.test\.ts:\d+:\d+: the metric does not depend on transformer\.h\.5\.output\[0\] \(\.grad at grad\.test\.ts:\d+:\d+\)/);
    await check();
    // the metric depends on layer 1 but not on layer 5: the backward never reaches layer 5
    await expect(
      model.trace(A, (m) => {
        const h1 = m.transformer.h[1].output[0];
        const h5 = m.transformer.h[5].output[0];
        m.transformer.h[3].output[0].sum().backward();
        return { g1: h1.grad, g5: h5.grad };
      }),
    ).rejects.toThrow(/^grad at grad\.test\.ts:\d+:\d+: the metric does not depend on transformer\.h\.5\.output\[0\] \(the backward never reached it\)/);
    await check();
  });

  it('backward on a non-scalar, .grad with no backward, two backwards in one invoke', async () => {
    await expect(model.trace(A, (m) => void m.output.logits.backward())).rejects.toThrow(
      /^backward at grad\.test\.ts:\d+:\d+: the metric must be a floating-point scalar .*got tensor \[1, 7, 512\]/,
    );
    await check();
    await expect(model.trace(A, (m) => m.transformer.h[2].output[0].grad)).rejects.toThrow(
      /grad at grad\.test\.ts:\d+:\d+\): this trace reads a gradient but calls no \.backward\(\)/,
    );
    await check();
    await expect(
      model.trace(A, (m) => {
        m.output.logits.index('0, -1, 1').backward();
        m.output.logits.index('0, -1, 2').backward();
      }),
    ).rejects.toThrow(/backward at grad\.test\.ts:\d+:\d+\): a second \.backward\(\) in the same invoke/);
    await check();
  });

  it('a patched gradient of the wrong shape fails inside the backward', async () => {
    await expect(
      model.trace(A, (m) => {
        const h = m.transformer.h[4].output[0];
        m.output.logits.index('0, -1, 1').backward();
        h.grad = Tensor.from([[1, 2, 3], [4, 5, 6], [7, 8, 9]]);
        return m.transformer.h[2].output[0].grad;
      }),
    ).rejects.toThrow(/^setGrad at grad\.test\.ts:\d+:\d+: cannot replace a value of shape \[1, 7, 64\] with shape \[3, 3\]/);
    await check();
  });

  it('generation refuses a backward, naming the line', async () => {
    await expect(
      model.generate(A, { maxNewTokens: 2 }, (m) => {
        m.output.logits.index('0, -1, 1').backward();
      }),
    ).rejects.toThrow(/^backward at grad\.test\.ts:\d+:\d+: gradients are not available in generate\(\)/);
    await check();
  });

  it('memory stays flat over many grad traces (autograd graphs are freed)', async () => {
    const prompt = 'The Eiffel Tower is a tall iron tower in the city of Paris, and many people visit it every year. '.repeat(2);
    const run = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const g = await model.trace(prompt, (m) => {
          const hs = m.transformer.h.map((b: any) => b.output[0]);
          m.output.logits.index('0, -1').logSoftmax(-1).index('5').backward();
          return hs.map((h: any) => h.grad);
        });
        g.forEach((t: Tensor) => t.dispose());
      }
    };
    await run(20);
    (globalThis as { gc?: () => void }).gc?.();
    const before = process.memoryUsage().rss;
    await run(150);
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 50));
    const grown = process.memoryUsage().rss - before;
    // one grad trace keeps ~12 layers x 46 tokens of activations and their attention for its backward
    // (a few MB): 150 of them leaked would be hundreds of MB
    expect(grown).toBeLessThan(40 * 1024 * 1024);
    await check();
  });
});
