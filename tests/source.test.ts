// `.source` (section 12 of the API): the operations inside a module's forward, read and patched
// like modules, against eager PyTorch on the same weights: the attention pattern computed by hand,
// and patches made by wrapping torch.softmax while the module runs (never model.pt).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, type Tensor } from '../src/index.js';
import { MODELS, expectClose, oracle, py } from './helpers.js';

// Eager torch.softmax wrapped while `module` runs: `patch` (a Python expression of y) replaces
// its result; `store` keeps every result it gave.
const patchSoftmax = (module: string, patch = 'y') => `import torch as T
_orig = T.softmax
_state = {'on': False, 'seen': []}
def _softmax(x, dim=None, **kw):
    y = _orig(x, dim=dim, **kw)
    if _state['on']:
        y = ${patch}
        _state['seen'].append(y)
    return y
T.softmax = _softmax
${module}.register_forward_pre_hook(lambda m, i: _state.__setitem__('on', True))
${module}.register_forward_hook(lambda m, i, o: _state.__setitem__('on', False))
`;

describe('gpt2 attention through .source', () => {
  let model: LanguageModel;
  let ids: number[];
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('lists the module’s own operations, numbered per kind in order, its children’s excluded', async () => {
    const names = await model.trace(ids, (m) => Object.keys(m.transformer.h[1].attn.source));
    // GPT2Attention.forward (python/torchsight_testing/examples.py): q k^T / sqrt(d), + mask,
    // softmax, @ v; c_attn and c_proj are child modules, their addmm is theirs
    const order = ['matmul_0', 'div_0', 'add_0', 'softmax_0', 'matmul_1', 'contiguous_0'].map((n) => names.indexOf(n));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(names.filter((n) => n.startsWith('matmul_'))).toEqual(['matmul_0', 'matmul_1']);
    expect(names.some((n) => n.startsWith('addmm_'))).toBe(false);
    const cAttn = await model.trace(ids, (m) => Object.keys(m.transformer.h[1].attn.c_attn.source));
    expect(cAttn).toContain('addmm_0');
  });

  it('String(source) prints each operation with its kind and shape', async () => {
    const text = await model.trace(ids, (m) => String(m.transformer.h[1].attn.source));
    expect(text).toMatch(/^transformer\.h\.1\.attn\.source \(GPT2Attention, \d+ operations\)/);
    expect(text).toContain('softmax_0: aten::softmax -> [batch, 4, seq, seq]');
    expect(text).toContain('matmul_1: aten::matmul -> [batch, 4, seq, 16]');
  });

  it('a wrong name suggests the nearest', async () => {
    await expect(model.trace(ids, (m) => m.transformer.h[1].attn.source.softmx_0.output)).rejects.toThrow(
      "operation 'transformer.h.1.attn.source.softmx_0' not found; did you mean 'softmax_0'?",
    );
    await expect(model.trace(ids, (m) => m.transformer.h[1].attn.source.softmax_9.output)).rejects.toThrow(/did you mean 'softmax_0'/);
  });

  it('softmax_0.output is the attention pattern: softmax(QK^T / sqrt(d) + mask) on the same weights', async () => {
    const r = await model.trace(ids, (m) => {
      const src = m.transformer.h[1].attn.source;
      return { pattern: src.softmax_0.output, q: src.matmul_0.inputs[0], kT: src.matmul_0.inputs[1], scores: src.matmul_0.output };
    });
    const ref = oracle('gpt2', `import math
cap = {}
attn = model.transformer.h[1].attn
attn.register_forward_pre_hook(lambda m, a: cap.__setitem__('in', a))
model(*batch_inputs([${py(ids)}]))
hs, mask = cap['in'][0], cap['in'][1]
q, k, v = attn.c_attn(hs).split(64, dim=2)
heads = lambda x: x.view(x.shape[0], x.shape[1], 4, 16).permute(0, 2, 1, 3)
q, k = heads(q), heads(k)
scores = q @ k.transpose(-1, -2)
result = {'pattern': torch.softmax(scores / math.sqrt(16) + mask, -1), 'q': q, 'kT': k.transpose(-1, -2), 'scores': scores}`);
    expectClose(r.pattern, ref.pattern, 1e-5);
    expectClose(r.q, ref.q, 1e-5);
    expectClose(r.kT, ref.kT, 1e-5);
    expectClose(r.scores, ref.scores, 1e-4);
    // causal: position 0 attends to itself only
    expect(r.pattern.index('0, :, 0, 0').data()).toEqual(new Float32Array([1, 1, 1, 1]));
  });

  it('patching an op output changes the logits exactly as the eager model with the same patch', async () => {
    const scaled = await model.trace(ids, (m) => {
      m.transformer.h[1].attn.source.softmax_0.output.mul_(0.5);
      return m.output.logits;
    });
    const zeroHead = await model.trace(ids, (m) => {
      m.transformer.h[2].attn.source.softmax_0.output.index(':, 2').zero_();
      return m.output.logits;
    });
    const replaced = await model.trace(ids, (m) => {
      const src = m.transformer.h[4].attn.source;
      src.softmax_0.output = src.softmax_0.output.pow(2);
      return m.output.logits;
    });
    const run = `result = model(*batch_inputs([${py(ids)}]))[0]`;
    expectClose(scaled, oracle('gpt2', patchSoftmax('model.transformer.h[1].attn', 'y * 0.5') + run));
    expectClose(zeroHead, oracle('gpt2', patchSoftmax('model.transformer.h[2].attn', 'y.index_fill(1, torch.tensor([2]), 0.0)') + run));
    expectClose(replaced, oracle('gpt2', patchSoftmax('model.transformer.h[4].attn', 'y.pow(2)') + run));
    const plain = oracle('gpt2', run);
    expect(() => expectClose(scaled, plain)).toThrow(); // the patch changed something
  });

  it('patching an op input changes only that operation’s use of it', async () => {
    // matmul_1 is probs @ v: doubling its input 1 (v) doubles the attention output before c_proj
    const r = await model.trace(ids, (m) => {
      const src = m.transformer.h[1].attn.source;
      src.matmul_1.inputs[1].mul_(2);
      return { pattern: src.softmax_0.output, logits: m.output.logits };
    });
    const ref = oracle('gpt2', `cproj = model.transformer.h[1].attn.c_proj
cproj.register_forward_pre_hook(lambda m, i: (i[0] * 2,))
result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(r.logits, ref);
  });

  it('a patch in one invoke touches only its rows', async () => {
    const other = model.tokenizer.encode('Cats and dogs are friends in the park');
    const r = await model.trace((tracer) => {
      const a = tracer.invoke(ids, (m) => m.output.logits);
      const b = tracer.invoke(other, (m) => {
        m.transformer.h[1].attn.source.softmax_0.output.mul_(0.5);
        return { logits: m.output.logits, pattern: m.transformer.h[1].attn.source.softmax_0.output };
      });
      return { a, b };
    });
    // the eager batch, left-padded as the invokes' rows are, with row 1's softmax halved
    const ref = oracle('gpt2', patchSoftmax('model.transformer.h[1].attn', 'torch.cat([y[:1], y[1:] * 0.5])') + `out = model(*batch_inputs([${py(ids)}, ${py(other)}]))[0]
result = {'a': out[:1], 'b': out[1:]}`);
    expectClose(r.a, ref.a, 1e-4);
    expectClose(r.b.logits, ref.b, 1e-4);
    expect(r.b.pattern.shape).toEqual([1, 4, ref.b.shape[1], ref.b.shape[1]]);
  });

  it('op sites cost nothing to traces that do not use them: the plain forward keeps its sites', async () => {
    const before = await model.trace(ids, (m) => m.output.logits);
    await model.trace(ids, (m) => m.transformer.h[1].attn.source.softmax_0.output);
    const after = await model.trace(ids, (m) => m.output.logits);
    expect(Array.from(after.data() as Float32Array)).toEqual(Array.from(before.data() as Float32Array));
    // op sites are not hook sites: the native site list is the export's
    expect(model.native.sites().some((s) => s.includes('.source.'))).toBe(false);
  });

  it('the root and every module list their ops; a module with none says so', async () => {
    const r = await model.trace(ids, (m) => ({ root: Object.keys(m.source), lmHead: Object.keys(m.lm_head.source), h: String(m.transformer.h.source) }));
    expect(r.lmHead).toEqual(['linear_0']);
    expect(r.h).toMatch(/no operations/);
  });
});

describe('llama naming', () => {
  let model: LanguageModel;
  let ids: number[];
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS.llama, { device: 'cpu' });
    ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('self_attn.source.softmax_0 is the pattern the eager attention computes; patched, the logits follow', async () => {
    const r = await model.trace(ids, (m) => {
      const names = Object.keys(m.model.layers[0].self_attn.source);
      return { names, pattern: m.model.layers[0].self_attn.source.softmax_0.output };
    });
    expect(r.names).toContain('repeat_interleave_0');
    expect(r.names).toContain('softmax_0');
    const ref = oracle('llama', patchSoftmax('model.model.layers[0].self_attn') + `model(*batch_inputs([${py(ids)}]))
result = _state['seen'][0]`);
    expectClose(r.pattern, ref, 1e-5);
    const patched = await model.trace(ids, (m) => {
      m.model.layers[1].self_attn.source.softmax_0.output.index(':, :, -1').mul_(0);
      return m.output.logits;
    });
    const refPatched = oracle('llama', patchSoftmax('model.model.layers[1].self_attn', 'torch.cat([y[:, :, :-1], y[:, :, -1:] * 0], 2)') + `result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(patched as Tensor, refPatched);
  });
});
