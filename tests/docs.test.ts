// The API reference in docs/api is generated from the types (`npm run docs`); this keeps the
// checked-in copy the same as what the current source generates.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ROOT, childEnv } from './helpers.js';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
}

describe('API docs', () => {
  it('docs/api is what `npm run docs` generates from the current types', () => {
    const out = mkdtempSync(join(tmpdir(), 'torchsight-docs-'));
    try {
      execFileSync(process.execPath, [join(ROOT, 'node_modules/typedoc/bin/typedoc'), '--out', out, '--logLevel', 'Error'], { cwd: ROOT, env: childEnv(), stdio: 'pipe' });
      const fresh = files(out).map((f) => relative(out, f)).sort();
      const committed = files(join(ROOT, 'docs/api')).map((f) => relative(join(ROOT, 'docs/api'), f)).sort();
      expect(committed, 'run `npm run docs`').toEqual(fresh);
      for (const f of fresh) expect(readFileSync(join(ROOT, 'docs/api', f), 'utf8'), `docs/api/${f} is stale: run \`npm run docs\``).toBe(readFileSync(join(out, f), 'utf8'));
      // the pages a user starts from are there and document the load options
      expect(readFileSync(join(out, 'index/interfaces/LoadOptions.md'), 'utf8')).toContain('onProgress');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
