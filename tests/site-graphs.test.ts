// Site graphs: a request repeated with the same sites runs a forward that keeps only those
// sites (built off the request path after the second request). Values still match eager
// PyTorch's hooks; site lists, abort checks and the least-recently-used bound still hold.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { MODELS, expectClose, oracle, py, sameValues } from './helpers.js';
import { Graph } from '../src/trace/graph.js';

const PATCH = Array.from({ length: 64 }, (_, i) => Math.cos(i) * 0.5);

/** Resolves once every site graph queued so far is built (they build on libuv's pool). */
async function built(model: LanguageModel, count: number): Promise<ReturnType<LanguageModel['native']['siteGraphs']>> {
  for (let i = 0; i < 1000; i++) {
    const gs = model.native.siteGraphs();
    if (gs.length >= count && gs.every((g) => g.ready)) return gs;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`site graphs not built: ${JSON.stringify(model.native.siteGraphs())}`);
}

describe('site graphs', () => {
  let model: LanguageModel;
  let ids: number[];
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
  });
  afterAll(async () => {
    await model.dispose();
  });

  const patch = () => Tensor.from(PATCH);
  const intervention = (m: any) => {
    m.transformer.h[6].output[0].index(':, -1').add_(patch());
    return { blocks: m.transformer.h.map((b: any) => b.output[0]), logits: m.output.logits };
  };

  it('a trace repeated in a loop runs a graph with only its sites, and its values match the oracle', async () => {
    const first = await model.trace(ids, intervention);
    expect(model.native.siteGraphs()).toEqual([]); // asked for once: nothing built
    const second = await model.trace(ids, intervention);
    const [g] = await built(model, 1);
    expect(g.forward).toBe('model');
    // the 12 block outputs and the logits' site, nothing else
    const blockSites = Array.from({ length: 12 }, (_, i) => `transformer.h.${i}:output:0`);
    expect(g.sites.filter((s) => blockSites.includes(s)).sort()).toEqual([...blockSites].sort());
    expect(g.sites.length).toBe(13);
    expect(g.siteOps).toBe(13); // the built graph itself calls those 13 and no other (the export has 354)
    expect(g.uses).toBe(0);
    const third = await model.trace(ids, intervention);
    expect(model.native.siteGraphs()[0].uses).toBe(1);
    const ref = oracle('gpt2', `patch = torch.tensor(${py(PATCH)}, dtype=torch.float32)
acts = []
def add(mod, i, o): o[0][:, -1] += patch
model.transformer.h[6].register_forward_hook(add)
for b in model.transformer.h: b.register_forward_hook(lambda mod, i, o: acts.append(o[0].clone()))
logits = model(*batch_inputs([${py(ids)}]))[0]
result = {'blocks': acts, 'logits': logits}`);
    for (const r of [first, second, third]) {
      r.blocks.forEach((b: Tensor, i: number) => expectClose(b, ref.blocks[i]));
      expectClose(r.logits, ref.logits);
    }
    // the same graph of ops with fewer hook calls: bit for bit the values of the full graph
    third.blocks.forEach((b: Tensor, i: number) => sameValues(b, first.blocks[i]));
    sameValues(third.logits, first.logits);
  });

  it('tracer.stop() ends a forward run by a site graph too', async () => {
    const stopAt1 = (m: any, tracer: any) => {
      const h = m.transformer.h[1].output[0].save();
      tracer.stop();
      return h;
    };
    const n = model.native.siteGraphs().length;
    const first = await model.trace(ids, stopAt1);
    await model.trace(ids, stopAt1);
    await built(model, n + 1);
    const g = model.native.siteGraphs().find((x) => x.sites.length === 1)!;
    expect(g.sites).toEqual(['transformer.h.1:output:0']);
    expect(g.siteOps).toBe(1);
    // asking for the logits shows where the forward ended: they are never made when it stops
    const graph = new Graph(model.padId);
    const res = model.recordTrace(graph, ids, stopAt1);
    const { value: third, raw } = (await model.submit(graph, res, { returnLogits: true })) as { value: Tensor; raw: { logits?: Tensor } };
    expect(model.native.siteGraphs().find((x) => x.sites.length === 1)!.uses).toBe(1);
    expect(raw.logits).toBeUndefined();
    sameValues(third, first);
    const ref = oracle('gpt2', `acts = []
model.transformer.h[1].register_forward_hook(lambda mod, i, o: acts.append(o[0].clone()))
model(*batch_inputs([${py(ids)}]))
result = acts[0]`);
    expectClose(third, ref);
  });

  it('a site list or an abort signal runs every site, even when a site graph is built', async () => {
    const run = async (options: { recordSites?: boolean; signal?: AbortSignal }) => {
      const graph = new Graph(model.padId);
      const res = model.recordTrace(graph, ids, intervention);
      return (await model.submit(graph, res, options)).raw;
    };
    await model.trace(ids, intervention);
    await model.trace(ids, intervention);
    const before = await built(model, 1);
    const listed = await run({ recordSites: true });
    expect(listed.fired).toContain('transformer.h.3.mlp.c_fc:output');
    expect(listed.fired!.length).toBeGreaterThan(300);
    await run({ signal: new AbortController().signal });
    await run({ signal: new AbortController().signal });
    expect(model.native.siteGraphs().map((g) => g.uses)).toEqual(before.map((g) => g.uses));
  });

  it('steered generation builds a graph for the cache step, and its tokens match the oracle', async () => {
    const prompt = model.tokenizer.encode('Cats and dogs are');
    const steer = Tensor.from(PATCH);
    const gen = () =>
      model.generate(prompt, { maxNewTokens: 8, stop: [] }, (m, g) => {
        g.all((m) => {
          m.transformer.h[2].output[0].add_(steer);
        });
      });
    const n = model.native.siteGraphs().length;
    const first = await gen();
    // one generation is one request, however many steps asked for the same sites
    expect(model.native.siteGraphs().filter((g) => g.forward === 'step')).toEqual([]);
    await gen();
    const gs = await built(model, n + 1); // with the cache every step, the prompt too, runs step.pt
    const step = gs.find((g) => g.forward === 'step')!;
    expect(step.sites).toEqual(['transformer.h.2:output:0']);
    // step.pt may call one site from more than one place (branches); nowhere near its ~350 sites
    expect(step.siteOps).toBeGreaterThanOrEqual(1);
    expect(step.siteOps).toBeLessThanOrEqual(4);
    const third = await gen();
    expect(model.native.siteGraphs().find((g) => g.forward === 'step')!.uses).toBeGreaterThanOrEqual(7);
    expect(third.tokens).toEqual(first.tokens);
    const ref = oracle<number[]>('gpt2', `steer = torch.tensor(${py(PATCH)}, dtype=torch.float32)
def f(mod, i, o): o[0].add_(steer)
model.transformer.h[2].register_forward_hook(f)
seq, gen = ${py(prompt)}, []
for _ in range(8):
    t = int(model(*batch_inputs([seq]))[0][0, -1].argmax())
    gen.append(t); seq.append(t)
result = gen`);
    expect(third.tokens).toEqual(ref);
  });
});

describe('site graph bounds', () => {
  let model: LanguageModel;
  let ids: number[];
  beforeAll(async () => {
    process.env.TORCHSIGHT_SITE_GRAPHS = '2'; // read when the model loads
    try {
      model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu', warmup: false });
    } finally {
      delete process.env.TORCHSIGHT_SITE_GRAPHS;
    }
    ids = model.tokenizer.encode('Paris is');
  });
  afterAll(async () => {
    await model.dispose();
  });
  const read = (layer: number) => model.trace(ids, (m) => m.transformer.h[layer].output[0]);

  it('sets of sites asked for once build nothing (a sweep over layers; a session is one request)', async () => {
    for (let l = 0; l < 12; l++) await read(l);
    const mlp = (m: any) => m.transformer.h[5].mlp.output;
    const twice = await model.session((s) => [s.trace(ids, mlp), s.trace(ids, mlp)]);
    expect(twice.map((t: Tensor) => t.shape)).toEqual([[1, ids.length, 64], [1, ids.length, 64]]);
    await new Promise((r) => setTimeout(r, 50));
    expect(model.native.siteGraphs()).toEqual([]);
  });

  it('keeps at most TORCHSIGHT_SITE_GRAPHS graphs, dropping the least recently used', async () => {
    // layers 0..11 were each asked for once above: a second request builds
    const expected = oracle<{ shape: number[]; data: number[] }[]>('gpt2', `acts = []
for b in model.transformer.h: b.register_forward_hook(lambda mod, i, o: acts.append(o[0].clone()))
model(*batch_inputs([${py(ids)}]))
result = acts`);
    for (const l of [0, 1]) {
      await read(l);
      await built(model, l + 1);
    }
    expect((await read(0)).shape).toEqual([1, ids.length, 64]); // layer 0's graph is now the most recent
    await read(2);
    const gs = await built(model, 2);
    expect(gs.map((g) => g.sites[0]).sort()).toEqual(['transformer.h.0:output:0', 'transformer.h.2:output:0']);
    for (const l of [0, 1, 2]) expectClose(await read(l), expected[l]);
  });
});

describe('site graphs and dispose', () => {
  it('a model disposed while its site graph builds frees cleanly (the build holds no model)', async () => {
    const model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu', warmup: false });
    const ids = model.tokenizer.encode('Paris is');
    const read = () => model.trace(ids, (m) => m.transformer.h[3].output[0]);
    const a = await read();
    await read();
    expect(model.native.siteGraphs()).toHaveLength(1); // queued (most likely still building)
    await model.dispose();
    await new Promise((r) => setTimeout(r, 300));
    expect(() => model.native).toThrow('this model was disposed');
    // another model of the same file is unaffected
    const again = await LanguageModel.load(MODELS.gpt2, { device: 'cpu', warmup: false });
    sameValues(await again.trace(ids, (m) => m.transformer.h[3].output[0]), a);
    await again.dispose();
  });
});
