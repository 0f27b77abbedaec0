// examples/08-attribution.ts as shipped, on models/tiny-facts: the attribution it prints
// (grad · (clean − corrupted) of logit(Paris) − logit(Seattle), every layer and position) equals
// eager PyTorch's (retain_grad on the same weights), the real patching effects it prints beside
// equal eager forward hooks doing the patch, and the heatmap is written.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel } from '../src/index.js';
import { PYTHON, ROOT, childEnv, py } from './helpers.js';

const DIR = join(ROOT, 'models', 'tiny-facts');

function oracle<T = any>(code: string): T {
  const r = spawnSync(PYTHON, ['-m', 'torchsight_testing.oracle'], {
    input: JSON.stringify({ model: DIR, code }),
    env: childEnv({ PYTHONPATH: join(ROOT, 'python') }),
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  if (r.status !== 0) throw new Error(`oracle failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

describe('examples/08-attribution.ts', () => {
  let model: LanguageModel;
  beforeAll(async () => {
    model = await LanguageModel.load(DIR);
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('prints the attribution and the real patching effects eager PyTorch gives, and writes the heatmap', () => {
    const svgPath = join(mkdtempSync(join(tmpdir(), 'torchsight-attr-')), 'attribution.svg');
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join('examples', '08-attribution.ts'), DIR, svgPath], {
      cwd: ROOT,
      env: childEnv(),
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (r.status !== 0) throw new Error(`examples/08-attribution.ts failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    const rows = (kind: string) => [...r.stdout.matchAll(new RegExp(`^(?:layer \\d+ |       )${kind}((?: +-?[\\d.]+)+)$`, 'gm'))].map((m) => m[1].trim().split(/ +/).map(Number));
    const est = rows('est');
    const real = rows('real');
    const enc = (s: string) => model.tokenizer.encode(s);
    const [paris, seattle] = [enc(' Paris')[0], enc(' Seattle')[0]];
    const ref = oracle<{ est: number[][]; real: number[][] }>(`
clean, corrupted = ${py([enc('The Eiffel Tower is in the city of'), enc('The Space Needle is in the city of')])}
blocks = model.transformer.h
metric = lambda l: l[0, -1, ${paris}] - l[0, -1, ${seattle}]
acts = {}
hs = [b.register_forward_hook(lambda mod, i, o, k=k: acts.__setitem__(k, o[0].clone())) for k, b in enumerate(blocks)]
model(*batch_inputs([clean])); [h.remove() for h in hs]
seen = {}
def keep(k):
    def fh(mod, i, o):
        o[0].retain_grad(); seen[k] = o[0]
    return fh
hs = [b.register_forward_hook(keep(k)) for k, b in enumerate(blocks)]
with torch.enable_grad():
    base = metric(model(*batch_inputs([corrupted]))[0])
    base.backward()
[h.remove() for h in hs]
est = [((acts[k] - seen[k]) * seen[k].grad).sum(-1)[0] for k in range(len(blocks))]
real = []
for k in range(len(blocks)):
    row = []
    for p in range(len(corrupted)):
        def patch(mod, i, o, p=p, k=k): o[0][:, p] = acts[k][:, p]
        h = blocks[k].register_forward_hook(patch)
        row.append(float(metric(model(*batch_inputs([corrupted]))[0]) - base))
        h.remove()
    real.append(row)
result = {'est': est, 'real': real}`);
    expect(est.length).toBe(4);
    expect(real.length).toBe(4);
    est.forEach((row, k) => {
      expect(row.length).toBe(8);
      // printed with two decimals
      row.forEach((v, p) => expect(Math.abs(v - (ref.est[k] as any).data[p])).toBeLessThanOrEqual(0.006));
      real[k].forEach((v, p) => expect(Math.abs(v - ref.real[k][p])).toBeLessThanOrEqual(0.006));
    });
    // the phenomenon: the estimate ranks the cells as the real sweep does
    expect(Number(/correlation of estimate and real effect over 32 cells: (-?[\d.]+)/.exec(r.stdout)?.[1])).toBeGreaterThan(0.9);
    const svg = readFileSync(svgPath, 'utf8');
    expect(svg).toMatch(/<svg[\s>]/);
    expect(svg).toContain('attribution patching');
  });
});
