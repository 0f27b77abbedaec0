// The seed tutorials on both example architectures, each against the eager PyTorch oracle
// (forward hooks doing the same intervention on the same weights); then the examples as shipped.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { ARCHS, MODELS, ROOT, childEnv, expectClose, oracle, py, type Arch } from './helpers.js';

const PATHS = {
  gpt2: { layers: 'transformer.h', norm: 'transformer.ln_f', pyLayers: 'model.transformer.h', pyNorm: 'model.transformer.ln_f' },
  llama: { layers: 'model.layers', norm: 'model.norm', pyLayers: 'model.model.layers', pyNorm: 'model.model.norm' },
};
const layersOf = (arch: Arch, m: any) => (arch === 'gpt2' ? m.transformer.h : m.model.layers);
const normOf = (arch: Arch, m: any) => (arch === 'gpt2' ? m.transformer.ln_f : m.model.norm);

describe.each(ARCHS)('%s tutorials', (arch) => {
  let model: LanguageModel;
  const P = PATHS[arch];
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS[arch], { device: 'cpu' });
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('1: activations and logits', async () => {
    const ids = model.tokenizer.encode('The capital of France is');
    const { acts, logits } = await model.trace(ids, (m) => ({
      acts: layersOf(arch, m).map((block: any) => block.output[0]),
      logits: m.output.logits,
    }));
    const ref = oracle(arch, `acts = []
for b in ${P.pyLayers}: b.register_forward_hook(lambda mod, i, o: acts.append(o[0].clone()))
logits = model(*batch_inputs([${py(ids)}]))[0]
top = logits[0, -1].softmax(-1).topk(5)
result = {'acts': acts, 'logits': logits, 'norm3': acts[3].norm(), 'top': [top.values, top.indices]}`);
    expect(acts.length).toBe(ref.acts.length);
    acts.forEach((a: Tensor, i: number) => expectClose(a, ref.acts[i], 1e-4, 1e-4));
    expectClose(logits, ref.logits);
    expect(acts[3].norm().item()).toBeCloseTo(ref.norm3.data[0], 2);
    const top = logits.index('0, -1').softmax(-1).topk(5);
    expectClose(top.values, ref.top[0]);
    expect(Array.from(top.indices.data(), Number)).toEqual(ref.top[1].data);
  });

  it("the seed's intervention: the last MLP's output set to 0", async () => {
    const ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
    // layers[11] on the 12-layer GPT-2 shape; the last layer (-1) on both
    const logits = await model.trace(ids, (m) => {
      layersOf(arch, m)[-1].mlp.output = 0;
      return m.output.logits;
    });
    const ref = oracle(arch, `${P.pyLayers}[-1].mlp.register_forward_hook(lambda mod, i, o: torch.zeros_like(o))
result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(logits, ref);
    // and the model is unchanged for the next trace
    const plain = await model.trace(ids, (m) => m.output.logits);
    const ref2 = oracle(arch, `result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(plain, ref2);
  });

  it('2: activation patching, and a per-layer patching sweep at the last position', async () => {
    const clean = model.tokenizer.encode('The Eiffel Tower is in the city of');
    const corrupted = [...clean];
    corrupted[1] = (corrupted[1] + 7) % 500;
    const cleanAct = await model.trace(clean, (m) => layersOf(arch, m)[2].output[0]);
    const patched = await model.trace(corrupted, (m) => {
      layersOf(arch, m)[2].output[0].copy_(cleanAct);
      return m.output.logits;
    });
    const ref = oracle(arch, `store = {}
h = ${P.pyLayers}[2]
hk = h.register_forward_hook(lambda mod, i, o: store.__setitem__('clean', o[0].clone()))
model(*batch_inputs([${py(clean)}])); hk.remove()
def patch(mod, i, o): o[0][:] = store['clean']
h.register_forward_hook(patch)
result = model(*batch_inputs([${py(corrupted)}]))[0]`);
    expectClose(patched, ref);

    // the sweep: every layer's last position from the clean run, patched into the corrupted one
    const answer = clean[clean.length - 1];
    const sweep = await model.session((s) => {
      const cleanActs = s.trace(clean, (m) => layersOf(arch, m).map((b: any) => b.output[0]));
      return cleanActs.map((act: any, L: number) =>
        s.trace(corrupted, (m) => {
          layersOf(arch, m)[L].output[0].index(':, -1').copy_(act.index(':, -1'));
          return m.output.logits.index('0, -1').logSoftmax(-1).index(`${answer}`);
        }),
      );
    });
    const refSweep = oracle<any[]>(arch, `store = []
hs = [b.register_forward_hook(lambda mod, i, o: store.append(o[0].clone())) for b in ${P.pyLayers}]
model(*batch_inputs([${py(clean)}]))
for x in hs: x.remove()
out = []
for L, b in enumerate(${P.pyLayers}):
    def patch(mod, i, o, L=L): o[0][:, -1] = store[L][:, -1]
    hk = b.register_forward_hook(patch)
    out.append(model(*batch_inputs([${py(corrupted)}]))[0][0, -1].log_softmax(-1)[${answer}])
    hk.remove()
result = out`);
    expect(sweep.length).toBe(refSweep.length);
    sweep.forEach((v: Tensor, L: number) => expectClose(v, refSweep[L], 1e-4, 1e-4));
    // the sweep is not flat: patching changes the answer's log-prob differently per layer
    const values = sweep.map((v: Tensor) => v.item());
    expect(Math.max(...values) - Math.min(...values)).toBeGreaterThan(1e-3);
  });

  it('3: cross-prompt sharing with two invokes in one forward', async () => {
    const a = 'The cat sat on the mat';
    const b = 'The dog ran through the park';
    const r = await model.trace((tracer) => {
      let cat: any;
      tracer.invoke(a, (m) => {
        cat = layersOf(arch, m)[1].output[0];
      });
      return tracer.invoke(b, (m) => {
        layersOf(arch, m)[1].output[0].copy_(cat);
        return m.output.logits;
      });
    });
    const ids = [model.tokenizer.encode(a), model.tokenizer.encode(b)];
    const ref = oracle(arch, `def patch(mod, i, o): o[0][1] = o[0][0]
${P.pyLayers}[1].register_forward_hook(patch)
result = model(*batch_inputs(${py(ids)}))[0][1:2]`);
    expectClose(r, ref);
  });

  it('4: a session: a value from one trace patched into the next, natively', async () => {
    const clean = model.tokenizer.encode('A restaurant in Paris serves food');
    const corrupted = model.tokenizer.encode('A restaurant in Rome serves wine');
    const n = Math.min(clean.length, corrupted.length);
    const patched = await model.session((s) => {
      const act = s.trace(clean.slice(0, n), (m) => layersOf(arch, m)[1].output[0]);
      return s.trace(corrupted.slice(0, n), (m) => {
        layersOf(arch, m)[1].output[0].copy_(act);
        return m.output.logits;
      });
    });
    const ref = oracle(arch, `store = {}
h = ${P.pyLayers}[1]
hk = h.register_forward_hook(lambda mod, i, o: store.__setitem__('a', o[0].clone()))
model(*batch_inputs([${py(clean.slice(0, n))}])); hk.remove()
def patch(mod, i, o): o[0][:] = store['a']
h.register_forward_hook(patch)
result = model(*batch_inputs([${py(corrupted.slice(0, n))}]))[0]`);
    expectClose(patched, ref);
  });

  it('5: steering: a vector from two prompts added at one layer', async () => {
    const pos = model.tokenizer.encode('I love this wonderful place');
    const neg = model.tokenizer.encode('I hate this terrible place');
    const target = model.tokenizer.encode('This restaurant is');
    const [hp, hn] = await Promise.all([
      model.trace(pos, (m) => layersOf(arch, m)[1].output[0].mean(1)),
      model.trace(neg, (m) => layersOf(arch, m)[1].output[0].mean(1)),
    ]);
    const steer = hp.sub(hn);
    const logits = await model.trace(target, (m) => {
      layersOf(arch, m)[1].output[0].add_(steer.mul(3));
      return m.output.logits;
    });
    const ref = oracle(arch, `acts = []
h = ${P.pyLayers}[1]
hk = h.register_forward_hook(lambda mod, i, o: acts.append(o[0].mean(1)))
model(*batch_inputs([${py(pos)}])); model(*batch_inputs([${py(neg)}])); hk.remove()
steer = acts[0] - acts[1]
def add(mod, i, o): o[0].add_(steer * 3)
h.register_forward_hook(add)
result = model(*batch_inputs([${py(target)}]))[0]`);
    expectClose(logits, ref);
  });

  it('6: the logit lens through the final norm and the (tied) head', async () => {
    const ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
    const lens = await model.trace(ids, (m) =>
      layersOf(arch, m).map((b: any) => m.lm_head(normOf(arch, m)(b.output[0])).index('0, -1').softmax(-1).topk(3)),
    );
    const ref = oracle<any[]>(arch, `acts = []
for b in ${P.pyLayers}: b.register_forward_hook(lambda mod, i, o: acts.append(o[0]))
model(*batch_inputs([${py(ids)}]))
out = []
for a in acts:
    t = model.lm_head(${P.pyNorm}(a))[0, -1].softmax(-1).topk(3)
    out.append([t.values, t.indices])
result = out`);
    expect(lens.length).toBe(ref.length);
    lens.forEach((t: { values: Tensor; indices: Tensor }, i: number) => {
      expectClose(t.values, ref[i][0]);
      expect(Array.from(t.indices.data(), Number)).toEqual(ref[i][1].data);
    });
  });
});

// The tutorials as shipped (examples/, what the README shows): each runs on its default model, the
// trained models/tiny-facts, and prints the phenomenon it is about. The numbers themselves are
// checked against the eager oracle in tiny-facts.test.ts; here, that the scripts say the same.
describe('examples/ on models/tiny-facts', () => {
  const run = (name: string): string => {
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join('examples', name)], {
      cwd: ROOT,
      env: childEnv(),
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (r.status !== 0) throw new Error(`examples/${name} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };

  it('01: every landmark answers its city', () => {
    const out = run('01-activations.ts');
    expect(out).toMatch(/"\sParis"\s+p=0\.\d+/);
    expect(out).toContain('20/20 right');
  });

  it('02: patching the last position flips Rome to Paris at a layer before the last', () => {
    const out = run('02-patching.ts');
    expect(out).toMatch(/not patched: .*top-1 " Rome"/);
    const layers = [...out.matchAll(/layer (\d+): .*top-1 "([^"]*)"/g)].map((m) => [Number(m[1]), m[2]] as const);
    const last = Math.max(...layers.map(([l]) => l));
    expect(layers.some(([l, w]) => l < last && w === ' Paris')).toBe(true);
  });

  it('03: the shared last position answers the clean city', () => {
    const out = run('03-cross-prompt.ts');
    expect(out).toMatch(/"The Colosseum is in the city of" -> " Rome"/);
    expect(out).toMatch(/last position from "The Eiffel Tower is in the city of" -> " Paris"/);
  });

  it('04: the function vector table', () => {
    const out = run('04-sessions.ts');
    const m = out.match(/five-shot ([\d.]+), zero-shot ([\d.]+), zero-shot \+ function vector ([\d.]+)/);
    expect(m).not.toBeNull();
    const [few, zero, fv] = m!.slice(1).map(Number);
    expect(few).toBeGreaterThanOrEqual(0.8);
    expect(zero).toBeLessThanOrEqual(0.4);
    expect(fv).toBeGreaterThanOrEqual(0.5);
  });

  it('05: steering turns "The food was" by the sign of the scale', () => {
    const out = run('05-steering.ts');
    const first = (scale: number) => out.match(new RegExp(`scale +${scale}: The food was (\\w+)`))?.[1];
    expect(['wonderful', 'delicious', 'great', 'excellent', 'friendly', 'amazing', 'perfect', 'lovely', 'fantastic', 'fresh']).toContain(first(2));
    expect(['terrible', 'awful', 'bland', 'rude', 'horrible', 'disgusting', 'slow', 'dirty', 'stale', 'boring']).toContain(first(-2));
  });

  it('06: the logit lens ends on the right city for every landmark', () => {
    const out = run('06-logit-lens.ts');
    const rows = [...out.matchAll(/^ {2}(\w+) +((?:[\d.]+ {2})*[\d.]+)$/gm)].map((m) => m[2].split(/ +/).map(Number));
    expect(rows.length).toBe(20);
    rows.forEach((p) => expect(p[p.length - 1]).toBeGreaterThanOrEqual(0.5));
  });
});
