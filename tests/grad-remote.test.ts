// Gradients through remote execution: the server's validator takes `.backward()`, `.grad` and
// `.grad = v` nodes (and refuses malformed ones with 400), and a grad trace or session run on the
// server equals the same code run locally, to the exact value (the local path is checked against
// eager PyTorch in grad.test.ts); a failing backward comes back naming the user's line.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import type { DecodedRequest } from '../src/remote/envelope.js';
import { loadServedModel, recordTrace, type ServedModel } from '../src/serve/runner.js';
import type { RunningServer } from '../src/serve/server.js';
import { RequestError, validateRequest } from '../src/serve/validate.js';
import { MODELS, sameValues } from './helpers.js';
import { serveGpt2 } from './serve-helpers.js';
import { packGraph, unpackNodes } from './support/wire.js';

const LIMITS = { maxNodes: 10_000, maxTokens: 1 << 16, maxNewTokens: 64 };
let local: LanguageModel;
let remote: LanguageModel;
let served: ServedModel;
let server: RunningServer;

beforeAll(async () => {
  [local, served, server] = await Promise.all([LanguageModel.load(MODELS.gpt2), loadServedModel(MODELS.gpt2, 'gpt2'), serveGpt2()]);
  remote = await LanguageModel.remote(server.url, 'gpt2', { quiet: true, backoffMs: 20 });
}, 120_000);
afterAll(async () => {
  await server?.close();
  await served?.dispose();
  await local?.dispose();
});

const attribution = (m: any) => {
  const h = m.transformer.h[2].output[0];
  const h5 = m.transformer.h[5].output[0];
  const logits = m.output.logits;
  logits.index('0, -1, 259').sub(logits.index('0, -1, 84')).backward();
  h5.grad.index(':, 0').zero_();
  return { h, grad: h.grad, g5: h5.grad };
};

describe('the validator', () => {
  it('accepts backward, grad and setGrad nodes and refuses malformed ones', () => {
    const rec = recordTrace(local, 'The cat sat on the', (m: any) => {
      const h = m.transformer.h[1].output[0];
      m.output.logits.index('0, -1, 3').backward();
      h.grad = h.grad.mul(2);
      return h.grad;
    });
    const sites = served.target.sites;
    const nodes = unpackNodes(rec.request.graph, sites);
    const check = () => validateRequest({ ...rec.request, graph: packGraph(nodes, new Map(sites.map((s, i) => [s, i]))) } as DecodedRequest, served.target, LIMITS);
    check();
    const refusal = () => {
      try {
        check();
      } catch (e) {
        expect(e).toBeInstanceOf(RequestError);
        return (e as Error).message;
      }
      throw new Error('expected a RequestError');
    };
    const set = nodes.find((n) => n.op === 'setGrad')!;
    set.args.pop();
    expect(refusal()).toMatch(/node \d+ \(setGrad\): setGrad takes 2 argument\(s\), the first a graph value/);
    set.args.push(0);
    const grad = nodes.find((n) => n.op === 'grad')!;
    const target = grad.args[0];
    grad.args[0] = 1.5;
    expect(refusal()).toMatch(/\(grad\): grad takes 1 argument\(s\), the first a graph value/);
    grad.args[0] = target;
    check();
  });
});

describe('remote gradients equal local', () => {
  it('a grad trace with a patched gradient', async () => {
    const r = (await remote.trace('The Eiffel Tower is in the city of', attribution)) as any;
    const l = (await local.trace('The Eiffel Tower is in the city of', attribution)) as any;
    for (const k of ['h', 'grad', 'g5']) {
      expect(r[k]).toBeInstanceOf(Tensor);
      sameValues(r[k], l[k]);
    }
  });

  it('a session whose traces each run their own backward', async () => {
    const session = (s: any) => ({
      a: s.trace('Paris is the capital of', attribution),
      b: s.trace('Rome is the capital of', (m: any) => {
        const h = m.transformer.h[3].output[0];
        m.output.logits.index('0, -1').logSoftmax(-1).index('7').backward();
        return h.grad;
      }),
    });
    const r = (await remote.session(session)) as any;
    const l = (await local.session(session)) as any;
    sameValues(r.a.grad, l.a.grad);
    sameValues(r.b, l.b);
  });

  it('a metric that does not depend on the value fails as locally, naming the line', async () => {
    const bad = (m: any) => {
      const h5 = m.transformer.h[5].output[0];
      m.transformer.h[1].output[0].sum().backward();
      return h5.grad;
    };
    const le = (await local.trace('Hi there', bad).catch((e) => e)) as Error;
    const re = (await remote.trace('Hi there', bad).catch((e) => e)) as Error;
    expect(le.message).toMatch(/does not depend on transformer\.h\.5\.output\[0\] \(\.grad at grad-remote\.test\.ts:\d+:\d+\)/);
    expect(re.message).toBe(le.message);
    const fn = (m: any) => m.output.logits;
    sameValues((await remote.trace('Hi', fn)) as Tensor, (await local.trace('Hi', fn)) as Tensor);
  });
});
