// `torchsight serve` as a process: prints its URL, serves several models under their names, and on
// SIGTERM finishes the running request before it exits 0.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { encodeRequest } from '../src/remote/envelope.js';
import { RemoteClient, type JobStatusEvent } from '../src/remote/client.js';
import { recordGenerate } from '../src/serve/runner.js';
import { MODELS, remoteTrace, spawnServe } from './serve-helpers.js';

let model: LanguageModel;
beforeAll(async () => {
  model = await LanguageModel.load(MODELS.gpt2);
});
afterAll(async () => {
  await model?.dispose();
});

describe('torchsight serve', () => {
  it('serves named models, and on SIGTERM finishes the running request, then exits 0', async () => {
    const s = await spawnServe([`${MODELS.gpt2}=gpt2`, `${MODELS.llama}=tiny-llama`, '--port', '0', '--log-level', 'warn']);
    try {
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const client = new RemoteClient(s.url, { quiet: true });
      expect((await client.health()).models).toEqual(['gpt2', 'tiny-llama']);
      const out = await remoteTrace<Tensor>(client, model, 'Hello', (m: any) => m.transformer.h[0].output[0]);
      const local = (await model.trace('Hello', (m: any) => m.transformer.h[0].output[0])) as Tensor;
      expect(Array.from(out.data() as Float32Array)).toEqual(Array.from(local.data() as Float32Array));

      const states: string[] = [];
      const rec = recordGenerate(model, 'Once', { maxNewTokens: 100, stop: [] }, (m: any, gen: any) => gen.all((mm: any) => mm.transformer.h[1].output[0].mul_(1)));
      const running = client.submit('gpt2', 'generate', await encodeRequest(rec.request), { onStatus: (e: JobStatusEvent) => states.push(e.state) });
      while (!states.includes('running')) await new Promise((r) => setTimeout(r, 5));
      s.child.kill('SIGTERM');
      const res = await running;
      expect(res.generate!.steps).toBe(100);
      expect(await s.exited).toBe(0);
      expect(s.stderr()).toMatch(/SIGTERM: finishing running requests/);
    } finally {
      if (s.child.exitCode === null) s.child.kill('SIGKILL');
    }
  });
});
