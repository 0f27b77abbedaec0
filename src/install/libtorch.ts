// Finds the libtorch installations on this machine, in the order the README gives: LIBTORCH,
// TORCH_DIR / CMAKE_PREFIX_PATH, the torch of Python, a libtorch downloaded by
// `torchsight libtorch download`, the system. Reads each one's version, CUDA and C++ ABI from
// its files, never by importing torch (that takes seconds).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { cacheOverride, pythonCommand } from '../settings.js';

export interface Libtorch {
  /** Where it was found: 'LIBTORCH', 'TORCH_DIR', 'CMAKE_PREFIX_PATH', 'python3 torch', 'download', 'system'. */
  source: string;
  /** The folder holding libtorch.so, libc10.so... (symlinks resolved). */
  libDir: string;
  /** The folder holding TorchConfig.cmake, when there is one (a source build needs it). */
  cmakeDir?: string;
  /** Full version, e.g. '2.11.0+cu130' or '1.13.0'. */
  version: string;
  /** 'major.minor', what a prebuilt binary must match. */
  series: string;
  /** CUDA version it was built with ('12.8'), or null for a CPU-only libtorch. */
  cuda: string | null;
  /** libstdc++'s new (C++11) ABI: every prebuilt is built with it. */
  cxx11Abi: boolean;
  /** 'debian' when the libraries carry versioned sonames (libc10.so.1.13), else 'upstream'. */
  flavor: 'debian' | 'upstream';
}

/** The cache folder: TORCHSIGHT_CACHE, else $XDG_CACHE_HOME/torchsight, else ~/.cache/torchsight. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = cacheOverride(env);
  if (dir) return resolve(dir);
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'torchsight');
}

const read = (p: string): string | undefined => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
};

/** libtorch's cmake config folder under a root, lib or prefix folder, if any. */
function findCmakeDir(dir: string): string | undefined {
  for (const c of [dir, join(dir, 'share/cmake/Torch'), join(dir, 'Torch'), join(dir, 'cmake/Torch'), join(dir, 'lib/cmake/Torch')])
    if (existsSync(join(c, 'TorchConfig.cmake'))) return c;
  return undefined;
}

/** The lib folder that goes with a cmake folder: <root>/share/cmake/Torch or <libdir>/cmake/Torch. */
function libDirFromCmake(cmakeDir: string): string | undefined {
  for (const c of [join(cmakeDir, '../../../lib'), join(cmakeDir, '../..'), join(cmakeDir, '../../lib')])
    if (existsSync(join(c, 'libc10.so'))) return c;
  return undefined;
}

/**
 * Describes the libtorch whose libraries are in `libDir` (and config in `cmakeDir`). `hint` is a
 * version read elsewhere (Python's torch/version.py) when the folder has no version file.
 */
export function describe(source: string, libDir: string, cmakeDir?: string, hint?: { version?: string; cuda?: string | null }): Libtorch | string {
  if (!existsSync(join(libDir, 'libc10.so'))) return `${source}: no libc10.so in ${libDir}`;
  const c10 = realpathSync(join(libDir, 'libc10.so'));
  const realLib = dirname(c10);
  const root = join(libDir, '..');
  let version = read(join(root, 'build-version'))?.trim() || hint?.version;
  const cfgVersion = cmakeDir && read(join(cmakeDir, 'TorchConfigVersion.cmake'))?.match(/PACKAGE_VERSION "([^"]+)"/)?.[1];
  if (!version && cfgVersion) version = cfgVersion;
  const soVersion = c10.match(/libc10\.so\.(\d+\.\d+)/)?.[1];
  if (!version && soVersion) version = soVersion;
  if (!version) return `${source}: cannot tell the libtorch version in ${libDir} (no build-version, TorchConfigVersion.cmake or versioned libc10.so)`;
  const series = version.match(/^(\d+\.\d+)/)?.[1];
  if (!series) return `${source}: unreadable libtorch version '${version}' in ${libDir}`;
  let cuda: string | null = hint?.cuda !== undefined ? hint.cuda : null;
  const plus = version.match(/\+cu(\d+)(\d)$/);
  if (plus) cuda = `${plus[1]}.${plus[2]}`;
  else if (hint?.cuda === undefined && existsSync(join(libDir, 'libtorch_cuda.so'))) {
    const cfg = cmakeDir ? read(join(cmakeDir, '../Caffe2/Caffe2Config.cmake')) ?? '' : '';
    cuda = cfg.match(/CUDA_VERSION[ "]+(\d+\.\d+)/)?.[1] ?? 'unknown';
  }
  const cfg = cmakeDir ? read(join(cmakeDir, 'TorchConfig.cmake')) ?? '' : '';
  const abi = cfg.match(/_GLIBCXX_USE_CXX11_ABI=(\d)/)?.[1];
  // Without a config to read: Debian builds with the new ABI; PyTorch's own builds have since 2.7.
  const cxx11Abi = abi !== undefined ? abi === '1' : soVersion !== undefined || Number(series.split('.')[0]) * 100 + Number(series.split('.')[1]) >= 207;
  return { source, libDir: realLib, cmakeDir, version, series, cuda, cxx11Abi, flavor: soVersion ? 'debian' : 'upstream' };
}

/** The folder of Python's torch package, found without importing it. */
function pythonTorchDir(python: string): string | undefined {
  const r = spawnSync(python, ['-c', 'import importlib.util as u; s = u.find_spec("torch"); print(s.submodule_search_locations[0] if s else "")'], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  const out = r.status === 0 ? r.stdout.trim() : '';
  return out || undefined;
}

export interface Discovery {
  found: Libtorch[];
  /** One line per place looked at and what was there. */
  tried: string[];
}

/** Every libtorch on this machine, best first; duplicates (the same lib folder) dropped. */
export function discover(env: NodeJS.ProcessEnv = process.env): Discovery {
  const found: Libtorch[] = [];
  const tried: string[] = [];
  const add = (r: Libtorch | string) => {
    if (typeof r === 'string') return void tried.push(r);
    tried.push(`${r.source}: libtorch ${r.version} (${r.cuda ? `CUDA ${r.cuda}` : 'CPU'}) in ${r.libDir}`);
    const same = found.find((f) => f.libDir === r.libDir);
    if (!same) found.push(r);
    else same.cmakeDir ??= r.cmakeDir; // Debian's Python torch links the system libtorch, which has the config
  };
  const fromPrefix = (source: string, dir: string) => {
    if (!existsSync(dir)) return add(`${source}: ${dir} does not exist`);
    const cmake = findCmakeDir(dir);
    const lib = existsSync(join(dir, 'lib', 'libc10.so')) ? join(dir, 'lib') : cmake ? libDirFromCmake(cmake) : existsSync(join(dir, 'libc10.so')) ? dir : undefined;
    if (!lib) return add(`${source}: no libtorch libraries under ${dir}`);
    add(describe(source, lib, cmake));
  };
  if (env.LIBTORCH) fromPrefix('LIBTORCH', env.LIBTORCH);
  if (env.TORCH_DIR) fromPrefix('TORCH_DIR', env.TORCH_DIR);
  for (const p of (env.CMAKE_PREFIX_PATH ?? '').split(':').filter(Boolean)) fromPrefix('CMAKE_PREFIX_PATH', p);

  const pythons = [...new Set([pythonCommand(env), env.PYTHON, 'python3', '/usr/bin/python3'].filter((p): p is string => !!p))];
  for (const py of pythons) {
    const dir = pythonTorchDir(py);
    if (!dir) {
      tried.push(`torch of ${py}: not installed`);
      continue;
    }
    const v = read(join(dir, 'version.py')) ?? '';
    const version = v.match(/__version__\s*=\s*'([^']+)'/)?.[1];
    const cudaRaw = v.match(/^cuda\s*(?::[^=]*)?=\s*(?:'([^']+)'|None)/m);
    const cuda = cudaRaw ? cudaRaw[1] ?? null : undefined;
    add(describe(`torch of ${py}`, join(dir, 'lib'), findCmakeDir(join(dir, 'share/cmake/Torch')), { version, cuda }));
  }

  const downloads = join(cacheDir(env), 'libtorch');
  if (existsSync(downloads)) {
    for (const d of readdirSync(downloads).sort().reverse()) fromPrefix(`download (${d})`, join(downloads, d, 'libtorch'));
  } else tried.push(`download: nothing in ${downloads}`);

  let system = 0;
  for (const base of ['/usr/lib', '/usr/local/lib', '/usr/lib64']) {
    if (!existsSync(base)) continue;
    const dirs = [join(base, 'cmake/Torch'), ...readdirSync(base).map((d) => join(base, d, 'cmake/Torch'))];
    for (const d of dirs)
      if (existsSync(join(d, 'TorchConfig.cmake'))) {
        const lib = libDirFromCmake(d);
        if (lib) {
          system++;
          add(describe('system', lib, d));
        }
      }
  }
  if (!system) tried.push('system: no /usr/lib/*/cmake/Torch');
  return { found, tried };
}

/** The prebuilt binary's name for this libtorch: linux-x64-torch2.11-cu130, linux-x64-torch1.13-debian. */
export function variantOf(t: Libtorch, platform = `${process.platform}-${process.arch}`): string {
  const kind = t.flavor === 'debian' ? 'debian' : t.cuda ? `cu${t.cuda.replace('.', '')}` : 'cpu';
  return `${platform}-torch${t.series}-${kind}`;
}

/** The libraries to load, in dependency order, before a prebuilt addon that links `t`. */
export function preloadList(t: Libtorch): string[] {
  const names = ['libc10.so', 'libtorch_cpu.so', 'libc10_cuda.so', 'libtorch_cuda.so', 'libtorch.so'];
  return names.map((n) => join(t.libDir, n)).filter((p) => existsSync(p));
}
