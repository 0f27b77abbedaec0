// The trained example model (models/tiny-facts, from the committed weights in training/tiny-facts):
// each phenomenon the tutorials show, measured through torchsight and checked against the eager
// PyTorch oracle (forward hooks doing the same intervention on the same weights).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { PYTHON, ROOT, childEnv, expectClose, py } from './helpers.js';

const DIR = join(ROOT, 'models', 'tiny-facts');
// the layers the tutorials use (examples/02..05): chosen on the trained model, checked below
const PATCH_LAYER = 1;
const FV_LAYER = 1;
const STEER_LAYER = 1;
const STEER_SCALE = 2;

interface Probes {
  landmarks: [string, string][];
  antonym: Record<string, string>;
  evalWords: string[];
  icl: string[];
  zeroShot: string[];
  fvBuild: string[];
  patchPairs: [string, string][];
  steerPrompt: string;
  steerPositive: string[];
  steerNegative: string[];
  positive: string[];
  negative: string[];
}

function runPython(python: string, args: string[], input?: string): string {
  const r = spawnSync(python, args, {
    cwd: ROOT,
    input,
    env: childEnv({ PYTHONPATH: `${join(ROOT, 'python')}:${ROOT}` }),
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`${python} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The eager model of models/tiny-facts (torchsight_testing.oracle: model, torch, batch_inputs in scope). */
function oracle<T = any>(code: string): T {
  return JSON.parse(runPython(PYTHON, ['-m', 'torchsight_testing.oracle'], JSON.stringify({ model: DIR, code }))) as T;
}

const argmaxRows = (t: Tensor): number[] => Array.from(t.argmax(-1).data(), Number);

describe('tiny-facts: the trained example model', () => {
  let model: LanguageModel;
  let P: Probes;
  let nLayer: number;
  const tok = (text: string) => model.tokenizer.encode(text);
  const one = (text: string) => {
    const ids = tok(text);
    if (ids.length !== 1) throw new Error(`${JSON.stringify(text)} is ${ids.length} tokens`);
    return ids[0];
  };
  const fact = (landmark: string) => `${landmark} is in the city of`;
  const cityOf = (landmark: string) => P.landmarks.find(([l]) => l === landmark)![1];

  beforeAll(async () => {
    model = await LanguageModel.load(DIR, { device: 'cpu' });
    P = JSON.parse(runPython(PYTHON, ['-m', 'training.probes'])) as Probes;
    nLayer = Number(model.manifest.config?.n_layer);
    expect(nLayer).toBeGreaterThan(1);
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('loads into transformers GPT2LMHeadModel strictly and agrees with it (eager check of the weights)', () => {
    const hfPython = process.env.TORCHSIGHT_HF_PYTHON ?? join(ROOT, '.venv', 'bin', 'python');
    expect(existsSync(hfPython), `${hfPython} (torch + transformers, made by setup)`).toBe(true);
    expect(runPython(hfPython, ['-m', 'training.check_hf', '--weights', 'training/tiny-facts'])).toMatch(/agree within/);
  });

  it('1: facts: the right city is the top prediction for every landmark', async () => {
    const prompts = P.landmarks.map(([l]) => fact(l));
    const last = await model.trace(prompts, (m) => m.output.logits.index(':, -1'));
    expect(argmaxRows(last)).toEqual(P.landmarks.map(([, c]) => one(` ${c}`)));
    const ref = oracle(`result = model(*batch_inputs(${py(prompts.map(tok))}))[0][:, -1]`);
    expectClose(last, ref, 1e-4, 1e-4);
  });

  it('2: patching the clean last position at a layer before the last makes the corrupted prompt answer the clean city', async () => {
    for (const [clean, corrupt] of P.patchPairs) {
      const [c, k] = [tok(fact(clean)), tok(fact(corrupt))];
      const sweep = await model.session((s) => {
        const acts = s.trace(c, (m) => m.transformer.h.map((b: any) => b.output[0].index(':, -1')));
        return acts.map((act: any, L: number) =>
          s.trace(k, (m) => {
            m.transformer.h[L].output[0].index(':, -1').copy_(act);
            return m.output.logits.index('0, -1').logSoftmax(-1);
          }),
        );
      });
      const ref = oracle<any[]>(`store = []
hs = [b.register_forward_hook(lambda mod, i, o: store.append(o[0][:, -1].clone())) for b in model.transformer.h]
model(*batch_inputs([${py(c)}]))
for x in hs: x.remove()
out = []
for L, b in enumerate(model.transformer.h):
    def patch(mod, i, o, L=L): o[0][:, -1] = store[L]
    hk = b.register_forward_hook(patch)
    out.append(model(*batch_inputs([${py(k)}]))[0][0, -1].log_softmax(-1))
    hk.remove()
result = out`);
      sweep.forEach((t: Tensor, L: number) => expectClose(t, ref[L], 1e-4, 1e-4));
      const tops = sweep.map((t: Tensor) => argmaxRows(t)[0]);
      expect(PATCH_LAYER).toBeLessThan(nLayer - 1);
      expect(tops[PATCH_LAYER], `${corrupt} patched from ${clean} at layer ${PATCH_LAYER}`).toBe(one(` ${cityOf(clean)}`));
      // unpatched, the corrupted prompt answers its own city
      const plain = await model.trace(k, (m) => m.output.logits.index('0, -1'));
      expect(argmaxRows(plain)[0]).toBe(one(` ${cityOf(corrupt)}`));
    }
  });

  it('3: function vectors: in-context antonyms, zero-shot, and the vector added at one layer (the seed table)', async () => {
    const want = P.evalWords.map((w) => one(P.antonym[w]));
    const acc = (ids: number[]) => ids.filter((id, i) => id === want[i]).length / want.length;
    const { fewShot, zero, steered } = await model.session((s) => {
      const fv = s.trace(P.fvBuild, (m) => m.transformer.h[FV_LAYER].output[0].index(':, -1').mean(0));
      return {
        fewShot: s.trace(P.icl, (m) => m.output.logits.index(':, -1')),
        zero: s.trace(P.zeroShot, (m) => m.output.logits.index(':, -1')),
        steered: s.trace(P.zeroShot, (m) => {
          m.transformer.h[FV_LAYER].output[0].index(':, -1').add_(fv);
          return m.output.logits.index(':, -1');
        }),
      };
    });
    const ref = oracle(`build = batch_inputs(${py(P.fvBuild.map(tok))})
store = []
h = model.transformer.h[${FV_LAYER}]
hk = h.register_forward_hook(lambda mod, i, o: store.append(o[0][:, -1].mean(0)))
model(*build); hk.remove()
fv = store[0]
few = model(*batch_inputs(${py(P.icl.map(tok))}))[0][:, -1]
zs = batch_inputs(${py(P.zeroShot.map(tok))})
zero = model(*zs)[0][:, -1]
def add(mod, i, o): o[0][:, -1] += fv
h.register_forward_hook(add)
result = {'few': few, 'zero': zero, 'steered': model(*zs)[0][:, -1]}`);
    expectClose(fewShot, ref.few, 1e-4, 1e-4);
    expectClose(zero, ref.zero, 1e-4, 1e-4);
    expectClose(steered, ref.steered, 1e-4, 1e-4);
    expect(acc(argmaxRows(fewShot))).toBeGreaterThanOrEqual(0.8);
    expect(acc(argmaxRows(zero))).toBeLessThanOrEqual(0.4);
    expect(acc(argmaxRows(steered))).toBeGreaterThanOrEqual(0.5);
  });

  it('4: steering: the positive-minus-negative review direction turns "The food was" by its sign', async () => {
    const mean = async (texts: string[]) => {
      const acts = await Promise.all(texts.map((t) => model.trace(t, (m) => m.transformer.h[STEER_LAYER].output[0].mean(1))));
      return acts.reduce((a, b) => a.add(b)).div(texts.length);
    };
    const steer = (await mean(P.steerPositive)).sub(await mean(P.steerNegative));
    const positive = new Set(P.positive.map((w) => one(` ${w}`)));
    const negative = new Set(P.negative.map((w) => one(` ${w}`)));
    const ids = tok(P.steerPrompt);
    for (const sign of [1, -1]) {
      const out = await model.generate(P.steerPrompt, { maxNewTokens: 4 }, (m, gen) => {
        gen.all((mm) => {
          mm.transformer.h[STEER_LAYER].output[0].add_(steer.mul(sign * STEER_SCALE));
        });
      });
      const ref = oracle<number[]>(`acts = []
h = model.transformer.h[${STEER_LAYER}]
hk = h.register_forward_hook(lambda mod, i, o: acts.append(o[0].mean(1)))
for t in ${py(P.steerPositive.map(tok))}: model(*batch_inputs([t]))
for t in ${py(P.steerNegative.map(tok))}: model(*batch_inputs([t]))
hk.remove()
n = ${P.steerPositive.length}
steer = torch.stack(acts[:n]).mean(0) - torch.stack(acts[n:]).mean(0)
def add(mod, i, o): o[0].add_(steer * ${sign * STEER_SCALE})
h.register_forward_hook(add)
ids = ${py(ids)}
new = []
for _ in range(4):
    nxt = int(model(*batch_inputs([ids + new]))[0][0, -1].argmax())
    new.append(nxt)
result = new`);
      const tokens = out.tokens as number[];
      expect(tokens).toEqual(ref);
      expect((sign > 0 ? positive : negative).has(tokens[0]), `first word with sign ${sign}: ${model.tokenizer.decode([tokens[0]])}`).toBe(true);
    }
  });

  it("5: the logit lens: the right city's probability rises across layers to >= 0.5 at the last", async () => {
    const prompts = P.landmarks.map(([l]) => tok(fact(l)));
    const cities = P.landmarks.map(([, c]) => one(` ${c}`));
    const lens = await Promise.all(
      prompts.map((ids, i) =>
        model.trace(ids, (m) =>
          m.transformer.h.map((b: any) => m.lm_head(m.transformer.ln_f(b.output[0])).index('0, -1').softmax(-1).index(`${cities[i]}`)),
        ),
      ),
    );
    const ref = oracle<any[][]>(`out = []
for ids, cid in zip(${py(prompts)}, ${py(cities)}):
    acts = []
    hs = [b.register_forward_hook(lambda mod, i, o: acts.append(o[0])) for b in model.transformer.h]
    model(*batch_inputs([ids]))
    for x in hs: x.remove()
    out.append([model.lm_head(model.transformer.ln_f(a))[0, -1].softmax(-1)[cid] for a in acts])
result = out`);
    lens.forEach((layers, i) => {
      layers.forEach((t: Tensor, L: number) => expectClose(t, ref[i][L], 1e-5, 1e-4));
      const p = layers.map((t: Tensor) => t.item());
      expect(p[p.length - 1], `${P.landmarks[i][1]} at the last layer`).toBeGreaterThanOrEqual(0.5);
      expect(p[p.length - 1]).toBeGreaterThan(p[0]);
    });
  });

  it('6: cross-prompt sharing: two invokes in one forward carry the clean city across', async () => {
    const [clean, corrupt] = P.patchPairs[0];
    const r = await model.trace((tracer) => {
      let act: any;
      tracer.invoke(fact(clean), (m) => {
        act = m.transformer.h[PATCH_LAYER].output[0].index(':, -1');
      });
      return tracer.invoke(fact(corrupt), (m) => {
        m.transformer.h[PATCH_LAYER].output[0].index(':, -1').copy_(act);
        return m.output.logits.index(':, -1');
      });
    });
    const ref = oracle(`def patch(mod, i, o): o[0][1, -1] = o[0][0, -1]
model.transformer.h[${PATCH_LAYER}].register_forward_hook(patch)
result = model(*batch_inputs(${py([tok(fact(clean)), tok(fact(corrupt))])}))[0][1:2, -1]`);
    expectClose(r, ref, 1e-4, 1e-4);
    expect(argmaxRows(r)).toEqual([one(` ${cityOf(clean)}`)]);
  });
});
