// The source layout the project keeps: no import circle in src/, no file in src/ past 400 lines,
// no native file past 450, and nothing shipped importing the test support code.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers.js';

const SRC = join(ROOT, 'src');
const sources = readdirSync(SRC, { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.ts'));

describe('src/ layout', () => {
  it('has no import circle (scripts/check-cycles.mjs), and the check finds one when there is', () => {
    const out = execFileSync(process.execPath, [join(ROOT, 'scripts/check-cycles.mjs'), SRC], { encoding: 'utf8' });
    expect(out).toMatch(/0 circle\(s\)/);
    // a circle through a type-only import counts too
    const dir = mkdtempSync(join(tmpdir(), 'torchsight-cycles-'));
    try {
      writeFileSync(join(dir, 'a.ts'), "import { b } from './b.js';\nexport const a = b;\n");
      writeFileSync(join(dir, 'b.ts'), "import type { A } from './c.js';\nexport const b = 1 as unknown as A;\n");
      writeFileSync(join(dir, 'c.ts'), "import { a } from './a.js';\nexport type A = typeof a;\n");
      const r = spawnSync(process.execPath, [join(ROOT, 'scripts/check-cycles.mjs'), dir], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stdout).toContain('circle: a.ts -> b.ts -> c.ts -> a.ts');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps every file under 400 lines', () => {
    const long = sources.map((f) => [f, readFileSync(join(SRC, f), 'utf8').split('\n').length] as const).filter(([, n]) => n > 400);
    expect(long).toEqual([]);
  });

  it('imports nothing from tests/ (the object form of graphs is test support, not shipped)', () => {
    const offenders = sources.filter((f) => /from\s+['"][^'"]*tests\//.test(readFileSync(join(SRC, f), 'utf8')));
    expect(offenders).toEqual([]);
  });
});

describe('native/ layout', () => {
  it('keeps every C++ file under 450 lines (one concern a file)', () => {
    const dir = join(ROOT, 'native');
    const files = readdirSync(dir).filter((f) => /\.(cpp|h|inc|c)$/.test(f) && !f.endsWith('.gen.inc'));
    expect(files.length).toBeGreaterThan(10);
    const long = files.map((f) => [f, readFileSync(join(dir, f), 'utf8').split('\n').length] as const).filter(([, n]) => n > 450);
    expect(long).toEqual([]);
  });
});
