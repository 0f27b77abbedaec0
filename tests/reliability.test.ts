// Concurrency, lifetime and cancellation: many traces in flight, two models, worker
// threads, disposal and GC, flat memory over 1000 traces, AbortSignal.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { LanguageModel, Tensor } from '../src/index.js';
import { MODELS, ROOT } from './helpers.js';

const flat = (t: Tensor) => Array.from(t.data() as Float32Array);

let gpt2: LanguageModel;
let llama: LanguageModel;
beforeAll(async () => {
  [gpt2, llama] = await Promise.all([LanguageModel.load(MODELS.gpt2, { device: 'cpu' }), LanguageModel.load(MODELS.llama, { device: 'cpu' })]);
});
afterAll(async () => {
  await gpt2.dispose();
  await llama.dispose();
});

const PROMPTS = Array.from({ length: 32 }, (_, i) => `prompt number ${i} about ${['cats', 'Paris', 'dogs', 'food'][i % 4]} and ${'more '.repeat(i % 5)}things`);

function traceOf(model: LanguageModel, i: number) {
  const layers = (m: any) => ('transformer' in m ? m.transformer.h : m.model.layers);
  return model.trace(PROMPTS[i], (m) => {
    layers(m)[i % 4].output[0].index(':, -1').mul_(1 + (i % 3));
    return { h: layers(m)[1].output[0], logits: m.output.logits };
  });
}

describe('concurrency', () => {
  it('32 traces in flight on one model give the results they give alone', async () => {
    const together = await Promise.all(PROMPTS.map((_, i) => traceOf(gpt2, i)));
    for (let i = 0; i < PROMPTS.length; i++) {
      const alone = await traceOf(gpt2, i);
      expect(flat(together[i].logits)).toEqual(flat(alone.logits));
      expect(flat(together[i].h)).toEqual(flat(alone.h));
    }
  });

  it('two models in one process, traces interleaved', async () => {
    const mixed = await Promise.all(PROMPTS.slice(0, 8).map((_, i) => traceOf(i % 2 ? llama : gpt2, i)));
    for (let i = 0; i < 8; i++) {
      const alone = await traceOf(i % 2 ? llama : gpt2, i);
      expect(flat(mixed[i].logits)).toEqual(flat(alone.logits));
    }
  });

  it('traces from worker_threads, with the addon loaded in each', async () => {
    const ids = gpt2.tokenizer.encode(PROMPTS[3]);
    const expected = flat(await gpt2.trace(ids, (m) => m.transformer.h[3].output[0]));
    // each worker loads the addon and runs the same read through the raw native entry
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData.addon);
      (async () => {
        const m = await addon.loadModel(workerData.model + '/model.pt', 'cpu', '');
        m.configure({ vocabSize: 512 });
        const n = workerData.ids.length;
        const big = (a) => BigInt64Array.from(a.map(BigInt));
        const out = [];
        for (let k = 0; k < 3; k++) {
          const r = await m.run({ traces: [{ batch: 1, seq: n, ids: big(workerData.ids), mask: big(workerData.ids.map(() => 1)),
            pos: big(workerData.ids.map((_, i) => i)), invokes: [[0, 1]], begin: 0, end: 1, stop: false }],
            // the packed graph (native/request.cpp): version 1, one node: read (string 0) at the site
            // named by string 1 (-2 - 1), occ 0, invoke -1, saved, step [0, 1), no loc, no args
            graph: { code: Float64Array.from([1, 1, 0, -3, 0, -1, 1, 0, 1, -1, 0]), strings: ['read', 'transformer.h.3:output:0'], tensors: [] } });
          out.push(Array.from(addon.tensorData(r.saved[1])));
        }
        m.dispose();
        parentPort.postMessage(out);
      })().catch((e) => parentPort.postMessage({ error: String(e) }));`;
    const results = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<number[][]>((resolve, reject) => {
            const w = new Worker(code, { eval: true, workerData: { addon: process.env.TORCHSIGHT_ADDON ?? join(ROOT, 'build/Release/torchsight.node'), model: MODELS.gpt2, ids } });
            w.once('message', (msg) => (msg.error ? reject(new Error(msg.error)) : resolve(msg)));
            w.once('error', reject);
          }),
      ),
    );
    for (const r of results) for (const run of r) expect(run).toEqual(expected);
  });
});

describe('lifetime', () => {
  it('dispose() frees at once, use after dispose throws, the rest stays valid', async () => {
    const r = await gpt2.trace('hello world', (m) => ({ a: m.transformer.h[0].output[0], b: m.transformer.h[1].output[0] }));
    r.a.dispose();
    expect(r.a.disposed).toBe(true);
    expect(() => r.a.shape).toThrow(/disposed/);
    expect(() => r.a.add(1)).toThrow(/disposed/);
    expect(() => r.b.add(r.a)).toThrow(/disposed/);
    expect(r.b.shape[2]).toBe(64);
    await expect(gpt2.trace('hello', (m) => m.transformer.h[0].output[0].add_(r.a))).rejects.toThrow(/disposed/);
  });

  it('1000 traces saving every block output keep resident memory flat', async () => {
    const prompt = 'The Eiffel Tower is a tall iron tower in the city of Paris, and many people visit it every year. '.repeat(2);
    const run = async (n: number, dispose: boolean) => {
      for (let i = 0; i < n; i++) {
        const acts = await gpt2.trace(prompt, (m) => m.transformer.h.map((b: any) => b.output[0]));
        if (dispose) acts.forEach((a: Tensor) => a.dispose());
      }
    };
    await run(100, true);
    (globalThis as { gc?: () => void }).gc?.();
    const before = process.memoryUsage().rss;
    await run(500, true); // explicit dispose
    await run(500, false); // left to the garbage collector (finalizers)
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 50));
    (globalThis as { gc?: () => void }).gc?.();
    const grown = process.memoryUsage().rss - before;
    // 1000 traces x 12 blocks x ~46 tokens x 64 floats = ~140 MB if anything leaked
    expect(grown).toBeLessThan(40 * 1024 * 1024);
  });
});

describe('cancellation', () => {
  it('an AbortSignal cancels queued work; the rest of the queue and the model are unaffected', async () => {
    const ctrl = new AbortController();
    const reason = new Error('user gave up');
    const p = [traceOf(gpt2, 0), gpt2.trace(PROMPTS[1], (m) => m.output.logits, { signal: ctrl.signal }), traceOf(gpt2, 2)];
    ctrl.abort(reason);
    const [a, b, c] = await Promise.allSettled(p);
    expect(a.status).toBe('fulfilled');
    expect(b.status).toBe('rejected');
    expect((b as PromiseRejectedResult).reason).toBe(reason);
    expect(c.status).toBe('fulfilled');
    // already-aborted signals reject at once
    await expect(gpt2.trace('x', (m) => m.output.logits, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  it('aborting a running forward stops it at the next module', async () => {
    const long = Array.from({ length: 16 }, () => 'a long prompt that takes some time to run through the model '.repeat(2));
    const ctrl = new AbortController();
    const started = Date.now();
    const p = gpt2.trace(long, (m) => m.output.logits, { signal: ctrl.signal });
    setTimeout(() => ctrl.abort(new Error('stop now')), 5);
    await expect(p).rejects.toThrow('stop now');
    expect(Date.now() - started).toBeLessThan(5000);
    const after = await traceOf(gpt2, 5);
    expect(after.logits.shape[2]).toBe(512);
  });
});
