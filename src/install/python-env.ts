// The Python that runs the exporter (`torchsight export`): TORCHSIGHT_PYTHON when set, else the
// environment `npm run setup` makes in the repository (.venv: torch and transformers pinned by
// python/requirements.txt), else python3 on PATH.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './loader.js';
import { pythonCommand } from '../settings.js';

export interface PythonEnv {
  /** the interpreter */
  python: string;
  /** how it was chosen */
  how: 'TORCHSIGHT_PYTHON' | '.venv (npm run setup)' | 'python3 on PATH';
}

export interface PythonVersions {
  python?: string;
  torch?: string;
  transformers?: string;
  /** why the versions could not be read (the interpreter does not run) */
  error?: string;
}

/** The exporter's Python, chosen as the header says. */
export function exporterPython(env: NodeJS.ProcessEnv = process.env, root = packageRoot): PythonEnv {
  const chosen = pythonCommand(env);
  if (chosen) return { python: chosen, how: 'TORCHSIGHT_PYTHON' };
  const venv = join(root, '.venv', 'bin', 'python');
  if (existsSync(venv)) return { python: venv, how: '.venv (npm run setup)' };
  return { python: 'python3', how: 'python3 on PATH' };
}

/** The versions of Python, torch and transformers in `python`, read from package metadata (no
 * import of torch, so it takes a moment); a package that is missing has no entry. */
export function pythonVersions(python: string): PythonVersions {
  const code = `import json, platform
from importlib import metadata
out = {"python": platform.python_version()}
for name in ("torch", "transformers"):
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
print(json.dumps(out))`;
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) return { error: `cannot run ${python}: ${r.error.message}` };
  if (r.status !== 0) return { error: `${python} failed: ${(r.stderr || '').trim().split('\n').pop()}` };
  try {
    return JSON.parse(r.stdout) as PythonVersions;
  } catch {
    return { error: `${python} printed no versions` };
  }
}

/** One line: the interpreter, how it was chosen, and its torch and transformers. */
export function describePython(p: PythonEnv, v: PythonVersions = pythonVersions(p.python)): string {
  if (v.error) return `${p.python} (${p.how}): ${v.error}`;
  const pkgs = [`torch ${v.torch ?? 'missing'}`, `transformers ${v.transformers ?? 'missing'}`].join(', ');
  return `${p.python} (${p.how}): Python ${v.python}, ${pkgs}`;
}
