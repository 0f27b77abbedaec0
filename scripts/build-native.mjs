// Builds the addon with cmake-js (the build of record). Extra arguments pass through,
// e.g. `npm run build:native -- --debug`. Uses both cores by default.
//
// `--torch2` (npm run build:native:torch2) builds instead against the torch of the exporter's
// Python (TORCHSIGHT_PYTHON, else .venv/bin/python in the repo), which must be a torch 2.x, into
// build-torch2/: the second addon the suite runs against (vitest.config.ts), beside the default
// build/ against the libtorch discovery finds first (Debian's 1.13 on the README's machine).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = require.resolve('cmake-js/bin/cmake-js');
const jobs = String(Math.max(1, cpus().length));
let extra = process.argv.slice(2);
const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs };

if (extra.includes('--torch2')) {
  extra = extra.filter((a) => a !== '--torch2');
  const python = process.env.TORCHSIGHT_PYTHON || join(root, '.venv', 'bin', 'python');
  const fail = (why) => {
    console.error(`build:native:torch2: ${why}`);
    process.exit(1);
  };
  if (!existsSync(python)) fail(`no exporter Python at ${python}; 'npm run setup' makes .venv with torch 2.x, or set TORCHSIGHT_PYTHON`);
  // Where its torch is, without importing it (that takes seconds).
  const r = spawnSync(python, ['-c', 'import importlib.util as u; s = u.find_spec("torch"); print(s.submodule_search_locations[0] if s else "")'], { encoding: 'utf8' });
  const torchDir = r.status === 0 ? r.stdout.trim() : '';
  if (!torchDir) fail(`${python} has no torch (${(r.stderr || r.error?.message || '').trim().split('\n').pop() || 'not installed'})`);
  const cmakeDir = join(torchDir, 'share', 'cmake', 'Torch');
  const version = /__version__\s*=\s*'([^']+)'/.exec(existsSync(join(torchDir, 'version.py')) ? readFileSync(join(torchDir, 'version.py'), 'utf8') : '')?.[1];
  if (!existsSync(join(cmakeDir, 'TorchConfig.cmake'))) fail(`the torch of ${python} (${torchDir}) has no cmake files (share/cmake/Torch)`);
  if (!version || !version.startsWith('2.')) fail(`the torch of ${python} is ${version ?? 'of unknown version'}, not 2.x`);
  console.log(`build:native:torch2: libtorch ${version} of ${python} -> build-torch2/`);
  // Exactly this torch: the CMakeLists looks at LIBTORCH and CMAKE_PREFIX_PATH before TORCH_DIR.
  delete env.LIBTORCH;
  delete env.CMAKE_PREFIX_PATH;
  env.TORCH_DIR = cmakeDir;
  extra.push('--out', join(root, 'build-torch2'));
}

const start = Date.now();
const r = spawnSync(process.execPath, [cli, 'compile', '--parallel', jobs, ...extra], { stdio: 'inherit', env, cwd: root });
if (r.status === 0) console.log(`build-native: done in ${Math.round((Date.now() - start) / 1000)} s`);
process.exit(r.status ?? 1);
