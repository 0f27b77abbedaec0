// `.source` and `.skip()` through `torchsight serve`: the server lists its models' operations,
// validates op sites and skip nodes, and the results equal the same code run locally (itself
// checked against eager PyTorch in source.test.ts and skip.test.ts).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { LanguageModel, type Tensor } from '../src/index.js';
import { MODELS, spawnServe } from './serve-helpers.js';

let local: LanguageModel;
let remote: LanguageModel;
let server: { child: ChildProcess; url: string; exited: Promise<number | null> };

beforeAll(async () => {
  server = await spawnServe([MODELS.gpt2, '--port', '0', '--log-level', 'warn']);
  local = await LanguageModel.load(MODELS.gpt2);
  remote = await LanguageModel.remote(server.url, 'gpt2', { quiet: true });
}, 120_000);
afterAll(async () => {
  server?.child.kill('SIGTERM');
  await server?.exited;
  await local?.dispose();
});

it('a remote trace reads and patches op sites and skips a block, as a local one does', async () => {
  const fn = (m: any) => {
    m.transformer.h[4].skip();
    m.transformer.h[1].attn.source.softmax_0.output.mul_(0.5);
    return { pattern: m.transformer.h[2].attn.source.softmax_0.output, listing: String(m.transformer.h[2].attn.source), logits: m.output.logits };
  };
  const prompt = 'The Eiffel Tower is in the city of';
  const r = (await remote.trace(prompt, fn)) as { pattern: Tensor; listing: string; logits: Tensor };
  const l = (await local.trace(prompt, fn)) as typeof r;
  expect(r.listing).toBe(l.listing);
  expect(r.listing).toContain('softmax_0: aten::softmax -> [batch, 4, seq, seq]');
  for (const k of ['pattern', 'logits'] as const) {
    expect(r[k].shape).toEqual(l[k].shape);
    expect(Array.from(r[k].data() as Float32Array)).toEqual(Array.from(l[k].data() as Float32Array));
  }
  await expect(remote.trace(prompt, (m: any) => m.transformer.h[1].attn.source.softmx_0.output)).rejects.toThrow(/did you mean 'softmax_0'/);
});
