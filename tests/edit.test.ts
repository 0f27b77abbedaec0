// model.edit(fn): a handle on the same weights whose interventions apply to every later trace,
// session and generation, against eager PyTorch with the same forward hooks; the original stays
// clean; clearEdits, inplace, two handles, dispose, and a remote model.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { MODELS, expectClose, oracle, py, sameValues } from './helpers.js';
import { serveGpt2 } from './serve-helpers.js';

const STEER = Array.from({ length: 64 }, (_, i) => 0.5 * Math.cos(i * 0.3));
const STEER_HOOK = `
steer = torch.tensor(${py(STEER)})
model.transformer.h[1].register_forward_hook(lambda m, i, o: (o[0].add_(steer),) and None)`;
const ZERO_MLP3 = `model.transformer.h[3].mlp.register_forward_hook(lambda m, i, o: torch.zeros_like(o))`;

let model: LanguageModel;
let steer: Tensor;
let ids: number[];
let other: number[];
beforeAll(async () => {
  model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
  steer = Tensor.from(STEER);
  ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
  other = model.tokenizer.encode('Cats sleep all day');
});
afterAll(async () => {
  await model.dispose();
});

const steerEdit = (m: any) => {
  m.transformer.h[1].output[0].add_(steer);
};
const zeroEdit = (m: any) => {
  m.transformer.h[3].mlp.output = 0;
};
const eagerLogits = (hooks: string, prompts: number[][] = [ids]) => oracle('gpt2', `${hooks}\nresult = model(*batch_inputs(${py(prompts)}))[0]`);

describe('model.edit', () => {
  it('a steering edit equals eager with that hook; the original stays clean', async () => {
    const edited = model.edit(steerEdit);
    expect(edited).not.toBe(model);
    expectClose(await edited.trace(ids, (m) => m.output.logits), eagerLogits(STEER_HOOK));
    expectClose(await model.trace(ids, (m) => m.output.logits), eagerLogits(''));
    // and again: the edit applies to every later trace
    expectClose(await edited.trace(ids, (m) => m.output.logits), eagerLogits(STEER_HOOK));
    await edited.dispose();
  });

  it("zeroing a layer; with the trace's own interventions after the edit's", async () => {
    const edited = model.edit(zeroEdit);
    expectClose(await edited.trace(ids, (m) => m.output.logits), eagerLogits(ZERO_MLP3));
    const r = await edited.trace(ids, (m) => {
      m.transformer.h[1].output[0].add_(steer); // the trace's own
      return { mlp: m.transformer.h[3].mlp.output, logits: m.output.logits }; // sees the edit
    });
    expect(r.mlp.abs().sum().item()).toBe(0);
    expectClose(r.logits, eagerLogits(`${STEER_HOOK}\n${ZERO_MLP3}`));
    await edited.dispose();
  });

  it('edits chain, apply to every invoke of a batch and to every trace of a session', async () => {
    const both = model.edit(steerEdit).edit(zeroEdit);
    const hooks = `${STEER_HOOK}\n${ZERO_MLP3}`;
    const r = await both.trace((t) => ({ a: t.invoke(ids, (m) => m.output.logits), b: t.invoke(other, (m) => m.output.logits) }));
    const batch = eagerLogits(hooks, [ids, other]);
    const per = batch.data.length / 2;
    expectClose(r.a, { shape: [1, ...batch.shape.slice(1)], data: batch.data.slice(0, per) });
    expectClose(r.b, { shape: [1, ...batch.shape.slice(1)], data: batch.data.slice(per) });
    const s = await both.session((s) => [s.trace(ids, (m) => m.output.logits), s.trace(other, (m) => m.output.logits)]);
    expectClose(s[0], eagerLogits(hooks));
    expectClose(s[1], eagerLogits(hooks, [other]));
    await both.dispose();
  });

  it('edits apply at every step of a generation', async () => {
    const edited = model.edit(steerEdit);
    const out = await edited.generate(ids, { maxNewTokens: 6 });
    const eager = oracle<number[]>('gpt2', `${STEER_HOOK}
seq, gen = ${py(ids)}, []
for _ in range(6):
    t = int(model(*batch_inputs([seq]))[0][0, -1].argmax())
    gen.append(t); seq.append(t)
result = gen`);
    expect(out.tokens).toEqual(eager);
    const clean = await model.generate(ids, { maxNewTokens: 6 });
    expect(clean.tokens).not.toEqual(eager); // the steer changes the greedy text (else this test shows nothing)
    // with the generation's own callback too
    const withFn = await edited.generate(ids, { maxNewTokens: 2 }, (m) => ({ h: m.transformer.h[1].output[0] }));
    expect(withFn.tokens).toEqual(eager.slice(0, 2));
    await edited.dispose();
  });

  it('clearEdits and { inplace: true }', async () => {
    const edited = model.edit(steerEdit);
    edited.clearEdits();
    sameValues(await edited.trace(ids, (m) => m.output.logits), await model.trace(ids, (m) => m.output.logits));
    expect(edited.edit(zeroEdit, { inplace: true })).toBe(edited);
    expectClose(await edited.trace(ids, (m) => m.output.logits), eagerLogits(ZERO_MLP3));
    await edited.dispose();
  });

  it('two edited handles from one model keep their own edits', async () => {
    const a = model.edit(steerEdit);
    const b = model.edit(zeroEdit);
    const [la, lb, l0] = await Promise.all([a, b, model].map((h) => h.trace(ids, (m) => m.output.logits)));
    expectClose(la, eagerLogits(STEER_HOOK));
    expectClose(lb, eagerLogits(ZERO_MLP3));
    expectClose(l0, eagerLogits(''));
    await a.dispose();
    await b.dispose();
  });

  it('a mistake in an edit throws at edit(), naming the line', () => {
    expect(() => model.edit((m) => m.transformer.hh)).toThrow(/module 'transformer.hh' not found.*edit\.test\.ts:\d+/);
    expect(() => model.edit(42 as never)).toThrow(/fn must be a function/);
  });

  it('dispose: an edited handle never frees the weights others use; the last handle does', async () => {
    const own = await LanguageModel.load(MODELS.gpt2, { device: 'cpu', warmup: false });
    const native = own.native;
    const edited = own.edit(steerEdit);
    await edited.dispose();
    await expect(edited.trace(ids, (m) => m.output.logits)).rejects.toThrow('this model handle was disposed');
    expect(() => edited.edit(zeroEdit)).toThrow('this model handle was disposed');
    expectClose(await own.trace(ids, (m) => m.output.logits), eagerLogits('')); // the original still runs
    const late = own.edit(steerEdit);
    await own.dispose(); // `late` still holds the weights
    expectClose(await late.trace(ids, (m) => m.output.logits), eagerLogits(STEER_HOOK));
    await late.dispose(); // the last handle: now they are freed
    expect(() => native.device).toThrow(/disposed/);
  });
});

describe('model.edit on a remote model', () => {
  it('the edits travel in each request and equal the local edited handle', async () => {
    const server = await serveGpt2();
    try {
      const remote = await LanguageModel.remote(server.url, 'gpt2', { quiet: true });
      const edited = remote.edit(steerEdit);
      const r = await edited.trace(ids, (m) => m.output.logits);
      expectClose(r, eagerLogits(STEER_HOOK));
      sameValues(await remote.trace(ids, (m) => m.output.logits), await model.trace(ids, (m) => m.output.logits));
    } finally {
      await server.close();
    }
  });
});
