// Loading: the module tree, the tokenizer, disposal; logits against the eager oracle.
import { describe, expect, it } from 'vitest';
import { LanguageModel } from '../src/index.js';
import { ARCHS, MODELS, expectClose, oracle, py } from './helpers.js';

const PROMPTS = ['The Eiffel Tower is in the city of', 'cats and dogs', 'A restaurant in Paris serves food to many people every day'];

describe.each(ARCHS)('%s', (arch) => {
  it('lists modulePaths exactly as the eager named_modules()', async () => {
    await using model = await LanguageModel.load(MODELS[arch], { device: 'cpu' });
    const eager = oracle<string[]>(arch, 'result = [n for n, _ in model.named_modules() if n]');
    expect(model.modulePaths()).toEqual(eager);
    const types = oracle<Record<string, string>>(arch, 'result = {n: type(m).__name__ for n, m in model.named_modules()}');
    const tree = String(model);
    expect(tree.split('\n')[0]).toBe(`${types['']}(`);
    // every module appears once, with its eager class name
    for (const p of model.modulePaths()) {
      const name = p.slice(p.lastIndexOf('.') + 1);
      expect(tree).toContain(`(${name}): ${types[p]}`);
    }
    expect(tree.split('\n').filter((l) => l.trim().startsWith('(')).length).toBe(model.modulePaths().length);
  });

  it('tokenizes like the Python BPE encoder and round-trips', async () => {
    await using model = await LanguageModel.load(MODELS[arch], { device: 'cpu' });
    const texts = [...PROMPTS, 'café – 東京 🚀', '  leading spaces and\nnewlines'];
    const ref = oracle<number[][]>(arch, `result = [tokenizer.encode(t) for t in ${py(texts)}]`);
    texts.forEach((t, i) => {
      const ids = model.tokenizer.encode(t);
      expect(ids).toEqual(ref[i]);
      expect(model.tokenizer.decode(ids)).toBe(t);
    });
  });

  it('gives the eager logits at several lengths and on a left-padded batch', async () => {
    await using model = await LanguageModel.load(MODELS[arch], { device: 'cpu' });
    const ids = PROMPTS.map((p) => model.tokenizer.encode(p));
    const ref = oracle<{ single: any[]; batch: any }>(
      arch,
      `ids = ${py(ids)}
result = {'single': [model(*batch_inputs([r]))[0][0] for r in ids], 'batch': model(*batch_inputs(ids))[0]}`,
    );
    for (let i = 0; i < ids.length; i++) {
      const { logits } = await model.forwardRaw(ids[i]);
      expectClose(logits.index('0'), ref.single[i], 1e-4, 1e-4);
    }
    const { logits } = await model.forwardRaw(ids);
    expectClose(logits, ref.batch, 1e-4, 1e-4);
    // left padding leaves each row's real positions as when run alone
    const longest = Math.max(...ids.map((r) => r.length));
    ids.forEach((r, i) => {
      const mine = logits.index(`${i}, ${longest - r.length}:`);
      expectClose(mine, ref.single[i], 1e-4, 1e-4);
    });
    // forwardRaw touches no site, so it ran the graph without sites; a trace reading the logits'
    // site runs the graph with them: the same numbers
    const viaSites = await model.trace(ids, (m) => m.output[0]);
    expect(viaSites.shape).toEqual(logits.shape);
    const a = logits.data() as Float32Array;
    const b = viaSites.data() as Float32Array;
    let worst = 0;
    for (let k = 0; k < a.length; k++) worst = Math.max(worst, Math.abs(a[k] - b[k]));
    expect(worst).toBeLessThan(1e-5);
  });

  it('fires every site of the manifest once per call, in eager order', async () => {
    await using model = await LanguageModel.load(MODELS[arch], { device: 'cpu' });
    const ids = model.tokenizer.encode(PROMPTS[0]);
    // eager order, recorded independently by forward hooks in Python
    const eagerOrder = oracle<string[]>(
      arch,
      `order = []
def pre(name):
    def f(mod, args):
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor): order.append(f"{name}:input:{i}")
    return f
def post(name):
    def walk(o, prefix):
        if isinstance(o, torch.Tensor): order.append(prefix)
        elif isinstance(o, tuple):
            for i, x in enumerate(o): walk(x, f"{prefix}:{i}")
    def f(mod, args, out):
        walk(out, f"{name}:output")
    return f
for n, m in model.named_modules():
    m.register_forward_pre_hook(pre(n)); m.register_forward_hook(post(n))
model(*batch_inputs([${py(ids)}]))
result = order`,
    );
    const pruned = new Set(
      model.manifest.modules.flatMap((m) => {
        const out: string[] = [];
        const walk = (s: any) => {
          if (!s) return;
          if (s.kind === 'tensor' && s.pruned) out.push(s.site);
          if (s.kind === 'tuple') s.items.forEach(walk);
        };
        m.inputs.forEach(walk);
        walk(m.output);
        return out;
      }),
    );
    const expected = eagerOrder.filter((s) => !pruned.has(s));
    for (let run = 0; run < 2; run++) {
      const { fired } = await model.forwardRaw(ids, { recordSites: true });
      expect(fired).toEqual(expected);
    }
    expect(expected.length).toBeGreaterThan(100);
    // the manifest lists the same eager order
    expect(model.manifest.sites).toEqual(eagerOrder);
  });
});

describe('lifetime', () => {
  it('dispose() frees the model; using it after throws; await using disposes', async () => {
    const model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    await model.forwardRaw('hello');
    await model.dispose();
    await expect(model.trace('hello', (m) => m.output.logits)).rejects.toThrow(/disposed/);
    let escaped: LanguageModel | undefined;
    {
      await using m2 = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
      escaped = m2;
      expect(m2.device).toBe('cpu');
    }
    expect(() => escaped!.device).toThrow(/disposed/);
  });
});
