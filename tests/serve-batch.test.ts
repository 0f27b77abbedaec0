// Cross-request batching: requests merged into one forward (nodes, strings, tensors and invokes
// shifted, rows appended) give each request the values it gets alone, and only requests that
// can merge exactly are merged.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { decodeRequest, encodeRequest, type DecodedRequest } from '../src/remote/envelope.js';
import { batchKey, mergeRequests } from '../src/serve/batch.js';
import { loadServedModel, recordGenerate, recordSession, recordTrace, type ServedModel } from '../src/serve/runner.js';
import { validateRequest } from '../src/serve/validate.js';
import { MODELS } from './helpers.js';

let model: LanguageModel;
let served: ServedModel;
beforeAll(async () => {
  model = await LanguageModel.load(MODELS.gpt2, { warmup: false });
  served = await loadServedModel(MODELS.gpt2, 'gpt2');
});
afterAll(async () => {
  await model.dispose();
  await served.dispose();
});

const flag = () => new Int32Array(new SharedArrayBuffer(4));
const decoded = async (rec: { request: Parameters<typeof encodeRequest>[0] }) => decodeRequest(await encodeRequest(rec.request));

/** Prompts (token ids) of one length: batching merges equal lengths. */
function sameLength(n: number): number[][] {
  return Array.from({ length: n }, (_, k) => Array.from({ length: 7 }, (_, i) => (31 * k + 17 * i + 5) % 500));
}

describe('mergeRequests', () => {
  it('each request of a merged forward gets what it gets alone', async () => {
    const [p1, p2, p3, p4] = sameLength(4);
    expect(p4).toBeDefined();
    const steer = Tensor.from(Array.from({ length: 64 }, (_, i) => Math.sin(i)));
    const scale = Tensor.from([2], { dtype: 'float64' });
    const recs = [
      // two invokes, a value flowing from the first to the second
      recordTrace(model, (tracer: any) => {
        let a: any;
        tracer.invoke(p1, (m: any) => {
          a = m.transformer.h[2].output[0];
        });
        return tracer.invoke(p2, (m: any) => {
          m.transformer.h[2].output[0].copy_(a);
          return { logits: m.output.logits, a };
        });
      }),
      // Tensors and index specs (strings in the table)
      recordTrace(model, p3, (m: any) => {
        m.transformer.h[5].output[0].index(':, -1').add_(steer);
        return { h: m.transformer.h[7].output[0].index('..., 0:8').mul(scale), top: m.output.logits.index('0, -1').topk(3) };
      }),
      // a module applied to a value, a replaced output, a Tensor after the other request's
      recordTrace(model, p4, (m: any) => {
        m.transformer.h[1].output[0] = m.transformer.h[0].output[0].mul(Tensor.from([0.5]));
        return m.lm_head(m.transformer.ln_f(m.transformer.h[3].output[0]));
      }),
    ];
    const reqs: DecodedRequest[] = await Promise.all(recs.map(decoded));
    const keys = reqs.map(batchKey);
    expect(keys[0]).toBeDefined();
    expect(new Set(keys).size).toBe(1);
    const batch = mergeRequests(reqs);
    const merged = { ...batch.request, kind: 'trace' as const, tensorBytes: 0, dispose() {} };
    validateRequest(merged, served.target, { maxNodes: 1e5, maxTokens: 1e6, maxNewTokens: 10 });
    expect(batch.request.traces[0].batch).toBe(4);
    expect(batch.request.traces[0].invokes).toEqual([[0, 1], [1, 1], [2, 1], [3, 1]]);
    const together = batch.split((await served.run(merged, flag())).saved);
    for (let i = 0; i < recs.length; i++) {
      const alone = recs[i].resolve(await served.run(await decoded(recs[i]), flag())) as any;
      const got = recs[i].resolve({ saved: together[i] }) as any;
      const leaves = (v: any): Tensor[] => (v instanceof Tensor ? [v] : Object.values(v).flatMap(leaves));
      const [a, b] = [leaves(got), leaves(alone)];
      expect(a.length).toBe(b.length);
      a.forEach((t, k) => {
        expect(t.shape).toEqual(b[k].shape);
        const x = Array.from(t.data() as Float32Array, Number);
        const y = Array.from(b[k].data() as Float32Array, Number);
        x.forEach((v, j) => expect(Math.abs(v - y[j])).toBeLessThanOrEqual(1e-4 + 1e-4 * Math.abs(y[j])));
      });
    }
  });

  it('greedy generations merge step by step: each gets the tokens, steps, events and saved values it gets alone', async () => {
    const prompts = sameLength(3);
    const steer = Tensor.from(Array.from({ length: 64 }, (_, i) => Math.cos(i) / 4));
    const fns = [
      (m: any, gen: any) => {
        gen.all((mm: any) => mm.transformer.h[2].output[0].add_(steer));
        return { first: m.output.logits.index(':, -1') };
      },
      (m: any, gen: any) => {
        let h: any;
        gen.all((mm: any) => {
          h = mm.transformer.h[4].output[0].index(':, -1, 0:6');
        });
        return { h };
      },
      (m: any, gen: any) => {
        gen.iter([1, 4], (mm: any) => mm.transformer.h[1].output[0].mul_(0.5));
        return { h0: m.transformer.h[0].output[0].index(':, -1, 0:3') };
      },
    ];
    // a stop id the first prompt reaches early, so the requests stop at different steps
    const probe = (await served.generate(await decoded(recordGenerate(model, prompts[0], { maxNewTokens: 10, stop: [] }, fns[0])), flag(), () => {})).generate!;
    const stop = probe.tokens[0][1];
    const recs = () => prompts.map((p, k) => recordGenerate(model, p, { maxNewTokens: 10, stop: [stop] }, fns[k]));
    const reqs = await Promise.all(recs().map(decoded));
    expect(new Set(reqs.map(batchKey)).size).toBe(1);
    expect(batchKey(reqs[0])).toMatch(/^generate/);
    const batch = mergeRequests(reqs);
    const events: number[][][] = [[], [], []];
    const merged = await served.generate({ ...batch.request, kind: 'generate', tensorBytes: 0, dispose() {} }, flag(), (tokens, step) =>
      batch.rows.forEach(([first, count], k) => {
        const mine = tokens.slice(first, first + count);
        if (mine.some((t) => t >= 0)) events[k][step] = mine;
      }),
    );
    const parts = batch.splitGeneration(merged);
    const alone = recs();
    const steps: number[] = [];
    for (let k = 0; k < 3; k++) {
      const own: number[][] = [];
      const res = await served.generate(await decoded(alone[k]), flag(), (tokens, step) => (own[step] = tokens));
      steps.push(res.generate!.steps);
      expect(parts[k].generate).toEqual(res.generate);
      expect(events[k]).toEqual(own);
      const a = recs()[k].resolve(parts[k]) as any;
      const b = alone[k].resolve(res) as any;
      const leaves = (v: any): Tensor[] => (v instanceof Tensor ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(leaves) : []);
      const [x, y] = [leaves(a.value), leaves(b.value)];
      expect(x.length).toBe(y.length);
      x.forEach((t, i) => {
        expect(t.shape).toEqual(y[i].shape);
        const u = Array.from(t.data() as Float32Array);
        const w = Array.from(y[i].data() as Float32Array);
        u.forEach((v, j) => expect(Math.abs(v - w[j])).toBeLessThanOrEqual(1e-4 + 1e-4 * Math.abs(w[j])));
      });
    }
    // the requests did stop at different steps, so the cut was exercised
    expect(Math.min(...steps)).toBeLessThan(merged.generate!.steps);
  });

  it('merges only what merges exactly: one-trace traces with rows of one length', async () => {
    const [p1] = sameLength(1);
    const trace = await decoded(recordTrace(model, p1, (m: any) => m.output.logits));
    const longer = await decoded(recordTrace(model, [...p1, 1, 2], (m: any) => m.output.logits));
    expect(batchKey(trace)).not.toBe(batchKey(longer));
    const session = await decoded(recordSession(model, (s: any) => s.trace(p1, (m: any) => m.output.logits)));
    expect(batchKey(session)).toBeUndefined();
    const key = async (o: object) => batchKey(await decoded(recordGenerate(model, p1, { maxNewTokens: 2, ...o })));
    expect(await key({})).toBeDefined();
    expect(await key({ temperature: 0.7, seed: 1 })).toBeUndefined(); // one random stream for all rows
    expect(await key({ stop: ['ab'] })).toBeUndefined();
    expect(await key({ maxNewTokens: 3 })).not.toBe(await key({}));
    expect(await key({ stop: [5] })).not.toBe(await key({}));
  });
});
