#!/usr/bin/env node
// libtorch paths for binding.gyp (node-gyp), found in the same order as CMakeLists.txt:
// LIBTORCH, TORCH_DIR / CMAKE_PREFIX_PATH, the torch of Python (TORCHSIGHT_PYTHON, PYTHON, python3),
// the system. Usage: node scripts/torch-paths.mjs include|libdir|libs|abi|std
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';

function configIn(dir) {
  for (const c of [dir, join(dir, 'share/cmake/Torch'), join(dir, 'Torch')])
    if (existsSync(join(c, 'TorchConfig.cmake'))) return c;
  return undefined;
}

function find() {
  const tried = [];
  const cands = [];
  if (process.env.LIBTORCH) cands.push(['LIBTORCH', process.env.LIBTORCH]);
  if (process.env.TORCH_DIR) cands.push(['TORCH_DIR', process.env.TORCH_DIR]);
  for (const p of (process.env.CMAKE_PREFIX_PATH ?? '').split(':').filter(Boolean)) cands.push(['CMAKE_PREFIX_PATH', p]);
  for (const py of [...new Set([process.env.TORCHSIGHT_PYTHON, process.env.PYTHON ?? 'python3', '/usr/bin/python3'].filter(Boolean))]) {
    try {
      const p = execFileSync(py, ['-c', 'import torch.utils; print(torch.utils.cmake_prefix_path)'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      cands.push([`torch of ${py}`, p]);
    } catch {
      tried.push(`torch of ${py} (not importable)`);
    }
  }
  for (const base of ['/usr/lib', '/usr/local/lib']) {
    if (!existsSync(base)) continue;
    for (const d of readdirSync(base)) cands.push(['system', join(base, d, 'cmake/Torch')]);
    cands.push(['system', join(base, 'cmake/Torch')]);
  }
  for (const [why, dir] of cands) {
    const cfg = configIn(dir);
    tried.push(`${why}: ${dir}`);
    if (cfg) return cfg;
  }
  throw new Error(`no libtorch found; tried:\n  ${tried.join('\n  ')}`);
}

const cfg = find();
// <prefix>/share/cmake/Torch in a libtorch folder or a pip wheel (TorchConfig's own rule);
// Debian's sits in /usr/lib/<triplet>/cmake/Torch with headers in /usr/include.
const prefix = [resolve(cfg, '../../..'), resolve(cfg, '../../../..')].find((p) => existsSync(join(p, 'include/torch/script.h'))) ?? resolve(cfg, '../../../..');
const text = readFileSync(join(cfg, 'TorchConfig.cmake'), 'utf8');
// Debian's TorchConfig sits in /usr/lib/<triplet>/cmake/Torch with libraries beside it;
// a libtorch folder or a pip wheel keeps them in <prefix>/lib.
const libdir = existsSync(join(prefix, 'lib', 'libtorch.so')) ? join(prefix, 'lib') : resolve(cfg, '../..');
const abi = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(text)?.[1] ?? '1';
// libtorch 2.x's headers need C++20 (its config asks for cxx_std_20); 1.13's build with C++17.
const std = /cxx_std_20/.test(text) ? 'c++20' : 'c++17';
const what = process.argv[2];
if (what === 'include') console.log([join(prefix, 'include'), join(prefix, 'include/torch/csrc/api/include')].join(' '));
else if (what === 'libdir') console.log(libdir);
else if (what === 'libs') console.log(['-L' + libdir, '-ltorch', '-ltorch_cpu', '-lc10', ...(existsSync(join(libdir, 'libtorch_cuda.so')) ? ['-ltorch_cuda', '-lc10_cuda'] : [])].join(' '));
else if (what === 'abi') console.log(abi);
else if (what === 'std') console.log(std);
else {
  console.error('usage: torch-paths.mjs include|libdir|libs|abi|std');
  process.exit(2);
}
