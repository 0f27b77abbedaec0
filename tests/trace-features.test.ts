// Envoys, proxies and graph features: index views patched in place, replacing inputs and
// outputs, applying modules, shapes, stop, save/value, return walking, Tensors as inputs.
import { inspect } from 'node:util';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor, TraceProxy } from '../src/index.js';
import { MODELS, expectClose, oracle, py, sameValues } from './helpers.js';
import { Graph } from '../src/trace/graph.js';
import { structValue, writeStruct } from '../src/trace/envoy.js';
import type { Struct } from '../src/manifest.js';

let model: LanguageModel;
let ids: number[];
beforeAll(async () => {
  model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
  ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
});
afterAll(async () => {
  await model.dispose();
});

describe('envoys', () => {
  it('index children, negative indices, length, map, iteration and path', async () => {
    await model.trace(ids, (m) => {
      expect(m.transformer.h.length).toBe(12);
      expect(m.transformer.h[-1].path).toBe('transformer.h.11');
      expect(m.transformer.h[8].mlp.path).toBe('transformer.h.8.mlp');
      expect(m.transformer.h.map((b: any) => b.path)).toEqual(Array.from({ length: 12 }, (_, i) => `transformer.h.${i}`));
      const paths: string[] = [];
      for (const b of m.transformer.h) paths.push(b.path);
      expect(paths.length).toBe(12);
      expect(m.path).toBe('');
    });
  });

  it("a wrong name throws while the callback runs, with a 'did you mean'", async () => {
    await expect(model.trace(ids, (m) => m.transformer.hh)).rejects.toThrow(
      "module 'transformer.hh' not found; did you mean 'transformer.h'?",
    );
    await expect(model.trace(ids, (m) => m.transformer.h[12])).rejects.toThrow(/module 'transformer.h.12' not found/);
    // the model is still usable
    const l = await model.trace(ids, (m) => m.output.logits);
    expect(l.shape).toEqual([1, ids.length, 512]);
  });

  it('envoys refuse what is not a module, and only .output and .input can be set', async () => {
    await model.trace(ids, (m) => {
      expect('h' in m.transformer).toBe(true);
      expect('hh' in m.transformer).toBe(false);
      expect(`${m.transformer.h[3]}`).toBe('Envoy(transformer.h.3)');
      // console.log prints them without reading names they lack (or recording reads)
      expect(inspect(m.transformer)).toBe('Envoy(transformer)');
      expect(inspect(m.transformer.h[3].output)).toBe('TupleView(transformer.h.3.output)');
      expect(m.transformer.h[3].type).toBe('GPT2Block');
      expect(m.transformer.h[3].length).toBeUndefined(); // not a list
      expect(m.transformer.children.map((c: any) => c.path)).toEqual(['transformer.wte', 'transformer.wpe', 'transformer.drop', 'transformer.h', 'transformer.ln_f']);
      expect(m.transformer.then).toBeUndefined(); // an envoy is not a promise
      expect(() => m.transformer.h[3].map).toThrow(/module 'transformer.h.3.map' not found/);
      expect(() => m.transformer.name).toThrow(/module 'transformer.name' not found/);
      expect(() => {
        m.transformer.h = 1;
      }).toThrow("cannot set 'h' on module 'transformer': only .output and .input can be replaced");
      expect(() => {
        m.transformer.foo = 1;
      }).toThrow("cannot set 'foo' on module 'transformer': only .output and .input can be replaced");
      expect(() => {
        m.transformer.path = 'x';
      }).toThrow("cannot set 'path' on module 'transformer'");
      expect(() => {
        m.transformer.h.length = 3;
      }).toThrow("cannot set 'length' on module 'transformer.h'");
      // envoys outlive the trace: nothing of one can be deleted
      expect(() => delete m.transformer.h).toThrow(TypeError);
      expect(Object.getPrototypeOf(m).anything).toBeUndefined();
    });
  });

  it('tuple outputs: items by index and negative index, length, iteration, array methods, bounds', async () => {
    const r = await model.trace(ids, (m) => {
      const out = m.transformer.h[2].output;
      expect(out.length).toBe(1);
      expect(() => out[1]).toThrow('transformer.h.2.output[1]: index out of range for a tuple of 1');
      expect(() => {
        (out as any)[3] = 0;
      }).toThrow('transformer.h.2.output[3]: index out of range for a tuple of 1');
      expect(0 in out).toBe(true);
      expect(1 in out).toBe(false);
      const [first] = out;
      const attn = m.transformer.h[2].attn.output;
      expect(attn.length).toBe(2);
      expect(attn[1]).toBeNull();
      expect(attn.map((x: unknown) => x === null)).toEqual([false, true]);
      return { first, last: out[-1], again: out[0], viaMap: out.map((x: unknown) => x)[0], logits: m.output.logits, named: m.output[0] };
    });
    // the same item read through each form is the same value, read once per view
    sameValues(r.last, r.first);
    sameValues(r.again, r.first);
    sameValues(r.viaMap, r.first);
    sameValues(r.named, r.logits);
    const ref = oracle('gpt2', `acts = {}
model.transformer.h[2].register_forward_hook(lambda mod, i, o: acts.__setitem__('b', o[0]))
model(*batch_inputs([${py(ids)}]))
result = acts['b']`);
    expectClose(r.first, ref);
  });

  it('a tuple view reads an item only when it is used: destructuring, iteration, assignment', () => {
    // a tuple like a Hugging Face block's (hidden state, cache object): the cache is not a tensor
    const items = [{ kind: 'tensor', site: 'transformer.h.1:output:0' }, { kind: 'other', type: 'DynamicCache' }] as Struct[];
    const graph = new Graph(model.padId);
    const scope = { graph, invoke: 0, manifest: model.manifest, byPath: new Map(), envoys: new Map(), siteIds: new Map() };
    const view = structValue(scope, { kind: 'tuple', items }, 'block.output') as any;
    const [h] = view;
    expect(h).toBeInstanceOf(TraceProxy);
    expect(graph.ops).toEqual(['read']);
    expect(() => view[1]).toThrow('block.output[1] is a DynamicCache, which torchsight cannot read');
    // assigned to a tuple whose second item is None, the cache is never read
    const target = { kind: 'tuple', items: [{ kind: 'tensor', site: 'transformer.h.2:output:0' }, { kind: 'none' }] } as Struct;
    writeStruct(scope, target, 'other.output', view);
    expect(graph.ops).toEqual(['read', 'write']);
    // as an argument a view stands for its items, and it is never taken for an options object
    const p = h.add(1);
    Tensor.cat(structValue(scope, { kind: 'tuple', items: [items[0]] }, 'x') as any, -1);
    expect(() => p.sum(view)).toThrow(/DynamicCache/);
    expect(graph.ops).toEqual(['read', 'write', 'add', 'read', 'cat']); // the view's item 0 was read already
  });

  it('a tuple output set from another tuple view takes its items', async () => {
    const logits = await model.trace(ids, (m) => {
      m.transformer.h[5].output = m.transformer.h[3].output;
      return m.output.logits;
    });
    const ref = oracle('gpt2', `acts = {}
model.transformer.h[3].register_forward_hook(lambda mod, i, o: acts.__setitem__('h3', o[0]))
model.transformer.h[5].register_forward_hook(lambda mod, i, o: (acts['h3'],) + tuple(o[1:]))
result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(logits, ref);
  });
});


describe('patching on views and replacing values', () => {
  it.each([':, -1', '0, 2:5', '..., 0:4'])('in-place add_ on the index view %s', async (spec) => {
    const steer = Tensor.from(Array.from({ length: 64 }, (_, i) => Math.sin(i)));
    const logits = await model.trace(ids, (m) => {
      const h = m.transformer.h[5].output[0];
      h.index(spec).add_(spec === '..., 0:4' ? steer.index('0:4') : steer);
      return m.output.logits;
    });
    const pySpec = spec === '..., 0:4' ? '..., 0:4' : spec;
    const ref = oracle('gpt2', `steer = torch.tensor(${py(Array.from({ length: 64 }, (_, i) => Math.sin(i)))}, dtype=torch.float32)
def f(mod, i, o): o[0][${pySpec}] += ${spec === '..., 0:4' ? 'steer[0:4]' : 'steer'}
model.transformer.h[5].register_forward_hook(f)
result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(logits, ref);
  });

  it('replaces an output with a proxy, a Tensor and a number, and an input', async () => {
    const ref = oracle('gpt2', `ids = ${py(ids)}
out = {}
h = model.transformer.h
k = h[3].register_forward_hook(lambda mod, i, o: (o[0] * 0.5,)); out['proxy'] = model(*batch_inputs([ids]))[0]; k.remove()
k = h[3].mlp.register_forward_hook(lambda mod, i, o: torch.full_like(o, 0.25)); out['number'] = model(*batch_inputs([ids]))[0]; k.remove()
k = h[4].ln_2.register_forward_pre_hook(lambda mod, a: (a[0] * 2,)); out['input'] = model(*batch_inputs([ids]))[0]; k.remove()
v = torch.linspace(-1, 1, 64)
k = h[2].attn.c_proj.register_forward_hook(lambda mod, i, o: v.expand_as(o).clone()); out['tensor'] = model(*batch_inputs([ids]))[0]; k.remove()
result = out`);
    const viaProxy = await model.trace(ids, (m) => {
      m.transformer.h[3].output = [m.transformer.h[3].output[0].mul(0.5)];
      return m.output.logits;
    });
    expectClose(viaProxy, ref.proxy);
    const viaNumber = await model.trace(ids, (m) => {
      m.transformer.h[3].mlp.output = 0.25;
      return m.output.logits;
    });
    expectClose(viaNumber, ref.number);
    const viaInput = await model.trace(ids, (m) => {
      m.transformer.h[4].ln_2.input = m.transformer.h[4].ln_2.input.mul(2);
      return m.output.logits;
    });
    expectClose(viaInput, ref.input);
    const v = Tensor.from(Array.from({ length: 64 }, (_, i) => -1 + (2 * i) / 63));
    const viaTensor = await model.trace(ids, (m) => {
      m.transformer.h[2].attn.c_proj.output = v;
      return m.output.logits;
    });
    expectClose(viaTensor, ref.tensor, 1e-4, 1e-3);
  });

  it('output[0] = value assigns one element of a tuple output', async () => {
    const logits = await model.trace(ids, (m) => {
      m.transformer.h[6].output[0] = m.transformer.h[6].output[0].neg();
      return m.output.logits;
    });
    const ref = oracle('gpt2', `model.transformer.h[6].register_forward_hook(lambda mod, i, o: (-o[0],))
result = model(*batch_inputs([${py(ids)}]))[0]`);
    expectClose(logits, ref);
  });
});

describe('graph values', () => {
  it('save() gives .value after the trace; returned objects and arrays are walked', async () => {
    let saved!: TraceProxy;
    const r = await model.trace(ids, (m) => {
      saved = m.transformer.h[0].output[0].save();
      return { nested: [m.transformer.h[1].mlp.output, { x: 3, s: 'text' }], shape: m.transformer.h[1].output[0].shape, size: m.transformer.h[1].output[0].size(-1) };
    });
    expect(saved.value).toBeInstanceOf(Tensor);
    expect(saved.value.shape).toEqual([1, ids.length, 64]);
    expect(r.nested[0]).toBeInstanceOf(Tensor);
    expect(r.nested[1]).toEqual({ x: 3, s: 'text' });
    expect(r.shape).toEqual([1, ids.length, 64]);
    expect(r.size).toBe(64);
    const ref = oracle('gpt2', `acts = {}
model.transformer.h[0].register_forward_hook(lambda mod, i, o: acts.__setitem__('h0', o[0]))
model.transformer.h[1].mlp.register_forward_hook(lambda mod, i, o: acts.__setitem__('mlp', o))
model(*batch_inputs([${py(ids)}]))
result = acts`);
    expectClose(saved.value, ref.h0);
    expectClose(r.nested[0] as Tensor, ref.mlp);
  });

  it('a proxy that was not saved says so; shapes feed reshape', async () => {
    let p!: TraceProxy;
    const r = await model.trace(ids, (m) => {
      p = m.transformer.h[0].output[0];
      const h = m.transformer.h[1].output[0];
      return h.reshape([h.size(0), -1]).sum(-1);
    });
    expect(() => p.value).toThrow(/was not saved/);
    expect(r.shape).toEqual([1]);
  });

  it('calling an envoy applies the module without firing its sites or their interventions', async () => {
    const r = await model.trace(ids, (m) => {
      const h3in = m.transformer.h[3].input;
      m.transformer.h[3].output = [m.transformer.h[3].output[0].mul(0)]; // would zero the block's output
      const again = m.transformer.h[3](h3in, m.transformer.h[3].inputs[1]); // the block applied anew: untouched
      const mlp = m.transformer.h[3].mlp(m.transformer.h[3].ln_2.input);
      return { again: again[0], mlp };
    });
    const ref = oracle('gpt2', `acts = {}
b = model.transformer.h[3]
b.register_forward_pre_hook(lambda mod, a: acts.__setitem__('in', a))
b.ln_2.register_forward_pre_hook(lambda mod, a: acts.__setitem__('ln2', a[0]))
model(*batch_inputs([${py(ids)}]))
result = {'again': b(*acts['in'])[0], 'mlp': b.mlp(acts['ln2'])}`);
    expectClose(r.again, ref.again);
    expectClose(r.mlp, ref.mlp);
  });

  it('Tensors from earlier traces are inputs; Tensor.cat/stack record inside a trace', async () => {
    const a = await model.trace(ids, (m) => m.transformer.h[0].output[0]);
    const r = await model.trace(ids, (m) => {
      const b = m.transformer.h[0].output[0];
      return { diff: b.sub(a).abs().max(), cat: Tensor.cat([a, b], 0), stack: Tensor.stack([b, a], 0) };
    });
    expect(r.diff.item()).toBe(0);
    expect(r.cat.shape).toEqual([2, ids.length, 64]);
    expect(r.stack.shape).toEqual([2, 1, ids.length, 64]);
  });

  it('tracer.stop() ends the forward once the graph is done', async () => {
    const r = await model.trace(ids, (m, tracer) => {
      const h = m.transformer.h[1].output[0];
      tracer.stop();
      return h;
    });
    expect(r.shape).toEqual([1, ids.length, 64]);
    // the forward really ended after transformer.h.1: no later site fired
    const { Graph } = await import('../src/trace/graph.js');
    const graph = new Graph(model.padId);
    const res = model.recordTrace(graph, ids, (m: any, tracer: any) => {
      const h = m.transformer.h[1].output[0];
      tracer.stop();
      return h;
    });
    const { raw } = await model.submit(graph, res, { recordSites: true, returnLogits: true });
    expect(raw.fired!.at(-1)).toBe('transformer.h.1:output:0');
    expect(raw.fired!).not.toContain('transformer.h.2:input:0');
    expect(raw.logits).toBeUndefined(); // asked for, but the forward stopped before the head
    // a trace that does not ask gets no logits back: nothing is kept that the user did not request
    const g2 = new Graph(model.padId);
    const res2 = model.recordTrace(g2, ids, (m: any) => m.transformer.h[1].output[0]);
    const plain = await model.submit(g2, res2, {});
    expect(plain.raw.logits).toBeUndefined();
    expect(plain.raw.saved.length).toBe(2); // one node: its id and its value
  });
});

describe('returned tuple outputs', () => {
  it('a whole tuple output returned without reading its items comes back as an array', async () => {
    const r = await model.trace(ids, (m) => ({ block: m.transformer.h[2].output, attn: m.transformer.h[2].attn.output }));
    expect(r.block.length).toBe(1);
    expect((r.block[0] as Tensor).shape).toEqual([1, ids.length, 64]);
    expect(r.attn[1]).toBeNull(); // the attention's second output is None in eager PyTorch too
    const ref = oracle('gpt2', `acts = {}
model.transformer.h[2].register_forward_hook(lambda mod, i, o: acts.__setitem__('b', o[0]))
model(*batch_inputs([${py(ids)}]))
result = acts['b']`);
    expectClose(r.block[0] as Tensor, ref);
  });
});
