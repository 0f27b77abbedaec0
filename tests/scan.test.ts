// model.scan(input, fn): fn's graph run for shapes and dtypes only. Its shapes and dtypes are
// checked against a real trace of the same fn (and against eager PyTorch's with forward hooks),
// its errors against the trace's, and the evidence that no weight ran is the device its values
// were computed on ('meta': no data), read from the native tensors themselves.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { MODELS, expectClose, oracle, py } from './helpers.js';
import { serveGpt2 } from './serve-helpers.js';

/** A real trace's result with each Tensor as {shape, dtype}: what scan must give. */
function shapesOf(v: unknown): unknown {
  if (v instanceof Tensor) return { shape: v.shape, dtype: v.dtype };
  if (Array.isArray(v)) return v.map(shapesOf);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shapesOf(x)]));
  return v;
}

/** The device each scanned tensor says it was computed on. */
function devicesOf(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) v.forEach((x) => devicesOf(x, out));
  else if (v !== null && typeof v === 'object') {
    if ('shape' in v && 'dtype' in v) out.push((v as { device?: string }).device ?? 'none');
    else Object.values(v).forEach((x) => devicesOf(x, out));
  }
  return out;
}

async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a rejection');
}

let gpt2: LanguageModel;
let llama: LanguageModel;
let ids: number[];
let other: number[];
beforeAll(async () => {
  gpt2 = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
  llama = await LanguageModel.load(MODELS.llama, { device: 'cpu' });
  ids = gpt2.tokenizer.encode('The Eiffel Tower is in the city of');
  other = gpt2.tokenizer.encode('Cats sleep');
});
afterAll(async () => {
  await gpt2.dispose();
  await llama.dispose();
});

// reads, ops of several dtypes, a patch, nested containers
const gpt2Fn = (m: any) => {
  m.transformer.h[1].mlp.output = m.transformer.h[1].mlp.output.mul(0.5); // a write: the forward goes on from it
  const attn = m.transformer.h[2].attn.output[0];
  const logits = m.lm_head.output;
  return {
    attn,
    nested: [logits.softmax(-1), { top: logits.argmax(-1), half: attn.to('float16'), best: logits.topk(5).indices }],
    sum: attn.sum(),
    shape: logits.shape,
    perHead: attn.view(attn.size(0), attn.size(1), 4, 16).transpose(1, 2),
  };
};

describe('model.scan', () => {
  it("gives the real trace's shapes and dtypes, nested as fn returns them (GPT-2)", async () => {
    const scanned = await gpt2.scan(ids, gpt2Fn);
    const traced = await gpt2.trace(ids, gpt2Fn);
    expect(scanned).toEqual(shapesOf(traced));
    expect(scanned.nested[1].top).toEqual({ shape: [1, ids.length], dtype: 'int64' });
    expect(scanned.shape).toEqual([1, ids.length, 512]);
  });

  it("gives the real trace's shapes on Llama (rotary embeddings, grouped key/value heads)", async () => {
    const fn = (m: any) => ({
      k: m.model.layers[1].self_attn.k_proj.output,
      layer: m.model.layers[1].output[0],
      mlp: m.model.layers[0].mlp.act_fn.output.mean(-1),
      logits: m.output.logits,
    });
    const scanned = await llama.scan(ids, fn);
    expect(scanned).toEqual(shapesOf(await llama.trace(ids, fn)));
  });

  it("equals eager PyTorch's shapes and dtypes on a padded batch of two prompts", async () => {
    const fn = (m: any) => ({ h2: m.transformer.h[2].output[0], mlp: m.transformer.h[2].mlp.output, logits: m.output.logits });
    const scanned = await gpt2.scan([ids, other], fn);
    const eager = oracle<Record<string, [number[], string]>>(
      'gpt2',
      `shapes = {}
def grab(name):
    def hook(m, i, o):
        x = o[0] if isinstance(o, tuple) else o
        shapes[name] = [list(x.shape), str(x.dtype).replace('torch.', '')]
    return hook
get_module('transformer.h.2').register_forward_hook(grab('h2'))
get_module('transformer.h.2.mlp').register_forward_hook(grab('mlp'))
out = model(*batch_inputs(${py([ids, other])}))[0]
shapes['logits'] = [list(out.shape), str(out.dtype).replace('torch.', '')]
result = shapes`,
    );
    for (const k of ['h2', 'mlp', 'logits'] as const) expect(scanned[k]).toEqual({ shape: eager[k][0], dtype: eager[k][1] });
  });

  it('scans several invokes, each with its own rows', async () => {
    const record = (tracer: any) => {
      const a = tracer.invoke(ids, (m: any) => m.transformer.h[0].output[0]);
      const b = tracer.invoke([other, other], (m: any) => m.transformer.h[3].attn.output[0].mean(1));
      return [a, b];
    };
    const scanned = await gpt2.scan(record);
    expect(scanned).toEqual(shapesOf(await gpt2.trace(record)));
    expect((scanned as any)[1].shape).toEqual([2, 64]);
  });

  it("a shape error throws the trace's message, naming the user's line", async () => {
    const bad = (m: any) => {
      const h = m.transformer.h[0].output[0];
      return h.matmul(h); // [1, n, 64] @ [1, n, 64]
    };
    const fromScan = await errorOf(gpt2.scan(ids, bad));
    expect(fromScan).toBe(await errorOf(gpt2.trace(ids, bad)));
    expect(fromScan).toMatch(/^matmul at scan\.test\.ts:\d+:\d+: /);
    const badWrite = (m: any) => {
      m.transformer.h[1].output[0] = Tensor.from([[1, 2, 3]]);
    };
    const writeErr = await errorOf(gpt2.scan(ids, badWrite));
    expect(writeErr).toBe(await errorOf(gpt2.trace(ids, badWrite)));
    expect(writeErr).toMatch(/scan\.test\.ts:\d+:\d+: cannot replace a value of shape \[1, \d+, 64\] with shape \[1, 3\]/);
  });

  it('an op that reads values says a scan has none, at its line', async () => {
    const err = await errorOf(gpt2.scan(ids, (m: any) => m.output.logits.sum().item()));
    expect(err).toMatch(/^item at scan\.test\.ts:\d+:\d+: needs a value, and model\.scan has none/);
  });

  it('runs no weights: every value was computed on the meta device (no data); a trace of the same fn is on the CPU', async () => {
    const fn = (m: any) => [m.transformer.h[5].output[0], m.lm_head.output, m.transformer.wte.output.norm()];
    const scanned = await gpt2.scan(ids, fn);
    expect(devicesOf(scanned)).toEqual(['meta', 'meta', 'meta']);
    // `device` is not part of the result's contract: not enumerable
    expect(Object.keys(scanned[0])).toEqual(['shape', 'dtype']);
    const traced = await gpt2.trace(ids, fn);
    expect(traced.map((t) => t.device)).toEqual(['cpu', 'cpu', 'cpu']);
  });

  it('leaves the model usable: a trace after scans equals eager PyTorch', async () => {
    await gpt2.scan(ids, (m: any) => m.output.logits);
    await errorOf(gpt2.scan(ids, (m: any) => m.transformer.h[0].output[0].matmul(m.transformer.h[0].output[0])));
    const logits = await gpt2.trace(ids, (m: any) => m.output.logits);
    expectClose(logits, oracle('gpt2', `result = model(*batch_inputs(${py([ids])}))[0]`));
  });

  it("applies an edited handle's edits (their shapes are checked too)", async () => {
    const edited = gpt2.edit((m: any) => {
      m.transformer.h[1].output[0] = Tensor.from([[1, 2, 3]]);
    });
    const err = await errorOf(edited.scan(ids, (m: any) => m.output.logits));
    expect(err).toMatch(/cannot replace a value of shape \[1, \d+, 64\] with shape \[1, 3\]/);
    await edited.dispose();
  });

  it('refuses .source operations and skip() with a clear error, and the next scan works', async () => {
    await expect(gpt2.scan(ids, (m: any) => m.transformer.h[1].attn.source.softmax_0.output)).rejects.toThrow(/model\.scan does not run operations inside modules \(\.source\) or skip\(\)/);
    await expect(gpt2.scan(ids, (m: any) => { m.transformer.h[1].skip(); return m.output.logits; })).rejects.toThrow(/model\.scan does not run/);
    const r: any = await gpt2.scan(ids, (m: any) => m.transformer.h[1].output[0]);
    expect(r.shape).toEqual([1, ids.length, 64]);
  });

  it('a remote model refuses scan with a clear error', async () => {
    const server = await serveGpt2();
    try {
      const remote = await LanguageModel.remote(server.url, 'gpt2', { quiet: true });
      await expect(remote.scan(ids, (m: any) => m.output.logits)).rejects.toThrow(/model\.scan runs on a model loaded here/);
    } finally {
      await server.close();
    }
  });
});
