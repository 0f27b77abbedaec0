// The exporter's Python: TORCHSIGHT_PYTHON, else the repository's .venv (npm run setup), else
// python3; `torchsight export` and `torchsight doctor` name the one they use.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { doctor, formatDoctor } from '../src/doctor.js';
import { describePython, exporterPython, pythonVersions } from '../src/install/python-env.js';
import { ROOT, childEnv } from './helpers.js';

describe("the exporter's Python", () => {
  const root = mkdtempSync(join(tmpdir(), 'ts-pyenv-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('is TORCHSIGHT_PYTHON when set, else <root>/.venv/bin/python when present, else python3', () => {
    expect(exporterPython({}, root)).toEqual({ python: 'python3', how: 'python3 on PATH' });
    mkdirSync(join(root, '.venv', 'bin'), { recursive: true });
    writeFileSync(join(root, '.venv', 'bin', 'python'), '');
    expect(exporterPython({}, root)).toEqual({ python: join(root, '.venv', 'bin', 'python'), how: '.venv (npm run setup)' });
    expect(exporterPython({ TORCHSIGHT_PYTHON: '/opt/py/bin/python' }, root)).toEqual({ python: '/opt/py/bin/python', how: 'TORCHSIGHT_PYTHON' });
  });

  it('an interpreter that does not run is reported, not thrown', () => {
    const p = { python: join(root, 'no-such-python'), how: 'TORCHSIGHT_PYTHON' as const };
    expect(describePython(p)).toMatch(/no-such-python \(TORCHSIGHT_PYTHON\): cannot run .*no-such-python/);
  });

  it("doctor names it with its torch and transformers, as that Python reports them", () => {
    const chosen = exporterPython();
    const r = spawnSync(chosen.python, ['-c', 'import torch, transformers, platform; print(platform.python_version(), torch.__version__.split("+")[0], transformers.__version__)'], { encoding: 'utf8', env: childEnv() });
    expect(r.status, r.stderr).toBe(0);
    const [python, torch, transformers] = r.stdout.trim().split(' ');
    const v = pythonVersions(chosen.python);
    expect([v.python, v.torch?.split('+')[0], v.transformers]).toEqual([python, torch, transformers]);
    const line = formatDoctor(doctor()).split('\n').find((l) => l.startsWith('export '))!;
    expect(line).toBe(`export     ${chosen.python} (${chosen.how}): Python ${python}, torch ${v.torch}, transformers ${transformers}`);
  });

  it('torchsight export says which Python runs it, and a missing model fails with its error', () => {
    const chosen = exporterPython();
    const r = spawnSync(join(ROOT, 'node_modules', '.bin', 'tsx'), [join(ROOT, 'src', 'cli.ts'), 'export', join(root, 'no-model'), join(root, 'out')], { encoding: 'utf8', env: childEnv() });
    expect(r.stderr.split('\n')[0]).toBe(`torchsight export: Python ${chosen.python} (${chosen.how})`);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`no model folder at ${join(root, 'no-model')}`);
  });
});
