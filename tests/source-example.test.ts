// examples/09-attention.ts runs on the trained tiny-facts model: the attention pattern it reads
// with `.source` shows the last position looking at the landmark, and the heatmap is written.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ROOT, childEnv } from './helpers.js';

it('09: the attention pattern of the landmark question, as text and as an SVG heatmap', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ts-attn-'));
  try {
    const svgPath = join(dir, 'attention.svg');
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join('examples', '09-attention.ts'), 'models/tiny-facts', svgPath], {
      cwd: ROOT,
      env: childEnv(),
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (r.status !== 0) throw new Error(`examples/09-attention.ts failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    expect(r.stdout).toMatch(/softmax_0: aten::softmax -> \[batch, \d+, seq, seq\]/);
    expect(r.stdout.match(/^layer \d+: /gm)?.length).toBe(4);
    const best = r.stdout.match(/strongest: layer (\d+) head (\d+), the last position on "(.*)" \(([\d.]+)\)/);
    expect(best).not.toBeNull();
    expect([' Eiffel', ' Tower']).toContain(best![3]);
    expect(Number(best![4])).toBeGreaterThan(0.5);
    const svg = readFileSync(svgPath, 'utf8');
    expect(svg).toMatch(/<svg /);
    expect(svg).toContain(`transformer.h[${best![1]}].attn.source.softmax_0`);
    expect(svg).toContain('Eiffel');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
