// Distribution: libtorch discovery, the prebuilt table, the preload shim, and the packed npm
// tarballs installed into a fresh project that runs tutorial 1 with no build step.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe as describeLibtorch, discover, variantOf } from '../src/install/libtorch.js';
import { PREBUILT } from '../src/install/prebuilt.js';
import { MODELS, ROOT, childEnv, oracle, py } from './helpers.js';

const DEBIAN_CONFIG = '/usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake';
const VENV_PYTHON = join(ROOT, '.venv/bin/python');
// The suite's torch2 project (vitest.config.ts) runs this file on build-torch2/.
const UNDER_TORCH2 = process.env.TORCHSIGHT_ADDON === join(ROOT, 'build-torch2/Release/torchsight.node');

describe('libtorch discovery', () => {
  // The README's machine (Debian 12 with libtorch-dev); the upstream-libtorch CI jobs have none.
  it.runIf(existsSync(DEBIAN_CONFIG))("finds Debian's libtorch with its version, ABI and prebuilt variant", () => {
    // What dpkg and the cmake config say, read independently of the code under test.
    const dpkgVersion = execFileSync('dpkg-query', ['-W', '-f=${Version}', 'libtorch-dev'], { encoding: 'utf8' });
    const abiLine = readFileSync(DEBIAN_CONFIG, 'utf8').match(/_GLIBCXX_USE_CXX11_ABI=(\d)/)![1];
    const d = discover({ PATH: process.env.PATH });
    const system = d.found.find((t) => t.libDir === '/usr/lib/x86_64-linux-gnu');
    expect(system, d.tried.join('\n')).toBeDefined();
    expect(dpkgVersion.startsWith(system!.series)).toBe(true);
    expect(system!.cuda).toBeNull();
    expect(system!.cxx11Abi).toBe(abiLine === '1');
    expect(system!.flavor).toBe('debian');
    expect(system!.cmakeDir).toBe('/usr/lib/x86_64-linux-gnu/cmake/Torch');
    expect(variantOf(system!)).toBe(`linux-x64-torch${dpkgVersion.match(/^(?:\d+:)?(\d+\.\d+)/)![1]}-debian`);
  });

  it('reads an unpacked libtorch folder (build-version, CUDA suffix) from LIBTORCH, first', () => {
    const dir = mkdtempSync(join(tmpdir(), 'libtorch-'));
    try {
      mkdirSync(join(dir, 'lib'));
      for (const f of ['libc10.so', 'libtorch_cpu.so', 'libtorch.so', 'libtorch_cuda.so']) writeFileSync(join(dir, 'lib', f), '');
      writeFileSync(join(dir, 'build-version'), '2.11.0+cu130\n');
      const d = discover({ PATH: process.env.PATH, LIBTORCH: dir });
      const t = d.found[0];
      expect(t.source).toBe('LIBTORCH');
      expect([t.version, t.series, t.cuda, t.flavor]).toEqual(['2.11.0+cu130', '2.11', '13.0', 'upstream']);
      expect(variantOf(t)).toBe('linux-x64-torch2.11-cu130');
      expect(PREBUILT[variantOf(t)]).toBeDefined();
      // A missing LIBTORCH is reported, not fatal, and the system one is still found.
      const missing = discover({ PATH: process.env.PATH, LIBTORCH: join(dir, 'nope') });
      expect(missing.tried[0]).toBe(`LIBTORCH: ${join(dir, 'nope')} does not exist`);
      expect(missing.found.some((x) => x.flavor === 'debian')).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // The exporter's Python (.venv, torch 2.x from PyPI with CUDA), the torch2 project's libtorch.
  it.runIf(existsSync(VENV_PYTHON))("finds the torch of the exporter's Python (a pip wheel) with its version, CUDA and ABI", () => {
    // What that torch says of itself when imported, independently of the files discovery reads.
    const [version, cuda, abi, dir] = JSON.parse(
      execFileSync(VENV_PYTHON, ['-c', 'import json, os, torch; print(json.dumps([torch.__version__, torch.version.cuda, torch.compiled_with_cxx11_abi(), os.path.dirname(torch.__file__)]))'], {
        encoding: 'utf8',
        env: childEnv(),
      }),
    );
    const d = discover({ PATH: process.env.PATH, TORCHSIGHT_PYTHON: VENV_PYTHON });
    const t = d.found.find((x) => x.source === `torch of ${VENV_PYTHON}`);
    expect(t, d.tried.join('\n')).toBeDefined();
    expect([t!.version, t!.cuda, t!.cxx11Abi, t!.flavor]).toEqual([version, cuda, abi, 'upstream']);
    expect(t!.libDir).toBe(realpathSync(join(dir, 'lib')));
    expect(t!.cmakeDir).toBe(join(dir, 'share/cmake/Torch'));
    const [major, minor] = version.split('.');
    expect(variantOf(t!)).toBe(`linux-x64-torch${major}.${minor}-${cuda ? `cu${cuda.replace('.', '')}` : 'cpu'}`);
  });

  it('says what is wrong with a folder that is not a libtorch', () => {
    expect(describeLibtorch('LIBTORCH', '/tmp')).toBe('LIBTORCH: no libc10.so in /tmp');
  });
});

describe('the addon under test', () => {
  // vitest.config.ts runs the suite once per addon; a project quietly running the other one
  // would count one libtorch's results twice.
  it("is the one its project names, on that project's libtorch", ({ task }) => {
    const torch2 = task.file.projectName === 'torch2';
    expect(UNDER_TORCH2).toBe(torch2);
    const addon = process.env.TORCHSIGHT_ADDON ?? join(ROOT, 'build/Release/torchsight.node');
    expect(addon).toBe(join(ROOT, torch2 ? 'build-torch2' : 'build', 'Release/torchsight.node'));
    // The libtorch its build was configured against (CMakeCache), and the one it runs on.
    const torchDir = readFileSync(join(addon, '../../CMakeCache.txt'), 'utf8').match(/^Torch_DIR:PATH=(.*)$/m)![1];
    const configured = readFileSync(join(torchDir, 'TorchConfigVersion.cmake'), 'utf8').match(/PACKAGE_VERSION "([^"]+)"/)![1];
    const running = JSON.parse(execFileSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(addon)}).info()))`], { encoding: 'utf8' })).torch;
    expect(running).toBe(configured);
    if (torch2) expect(running).toMatch(/^2\./);
  });
});

describe('prebuilt variants', () => {
  it('the workflow builds exactly the variants the loader knows', () => {
    const wf = readFileSync(join(ROOT, '.github/workflows/prebuilt.yml'), 'utf8');
    const built = [...wf.matchAll(/variant: (linux-x64-[\w.-]+)/g)].map((m) => m[1]);
    expect(new Set(built)).toEqual(new Set(Object.keys(PREBUILT)));
  });

  it('the preload shim reports a library it cannot load and rejects bad arguments, without crashing', () => {
    const shim = createRequire(import.meta.url)(join(ROOT, 'build/Release/torchsight_preload.node'));
    expect(shim.preload([])).toBeNull();
    expect(shim.preload(['/usr/lib/x86_64-linux-gnu/libc10.so'])).toBeNull();
    expect(shim.preload(['/nonexistent/libc10.so'])).toMatch(/^\/nonexistent\/libc10\.so: .*No such file/);
    expect(() => shim.preload('libc10.so')).toThrow(/paths must be an array of strings/);
    expect(() => shim.preload([42])).toThrow(/each path must be a string/);
  });
});

// It packs build/ (the default addon) whichever project runs: the torch1.13 project's run covers it,
// and no prebuilt variant exists for the torch2 project's libtorch (a pip wheel's).
(UNDER_TORCH2 ? () => {} : describe)('the packed package in a fresh project', () => {
  let work: string;
  let tarballs: string[];
  const torch = JSON.parse(
    execFileSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(join(ROOT, 'build/Release/torchsight.node'))}).info()))`], { encoding: 'utf8' }),
  ).torch as string;
  const variant = variantOf(discover({ PATH: process.env.PATH }).found.find((t) => torch.startsWith(t.series))!);

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'torchsight-pack-'));
    tarballs = execFileSync(process.execPath, [join(ROOT, 'scripts/pack.mjs'), '--variant', variant, '--out', join(work, 'pack')], { encoding: 'utf8', env: childEnv() })
      .trim()
      .split('\n');
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  // npm 12 runs no install scripts by default: `scripts: false` is that user.
  const project = (name: string, packages: string[], scripts = true) => {
    const dir = join(work, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...(scripts ? [] : ['--ignore-scripts']), ...packages], { cwd: dir, env: childEnv(), stdio: 'pipe' });
    cpSync(join(ROOT, 'tests/fixtures/package/tutorial.mjs'), join(dir, 'tutorial.mjs'));
    return dir;
  };
  // The user's environment: no override of the addon, an empty cache.
  const userEnv = (extra: NodeJS.ProcessEnv = {}) => {
    const env = childEnv({ TORCHSIGHT_CACHE: join(work, 'cache'), ...extra });
    delete env.TORCHSIGHT_ADDON;
    return env;
  };

  it('lists every prebuilt as an optional dependency, at its own version', () => {
    const main = tarballs.find((t) => /torchsight-\d/.test(t))!;
    const pkg = JSON.parse(execFileSync('tar', ['xzf', main, '-O', 'package/package.json'], { encoding: 'utf8' }));
    expect(pkg.optionalDependencies).toEqual(Object.fromEntries(Object.keys(PREBUILT).map((v) => [`@torchsight/${v}`, pkg.version])));
    expect(pkg.devDependencies).toBeUndefined();
  });

  it('runs tutorial 1 on the prebuilt binary with no build step, matching eager PyTorch', () => {
    const dir = project('app', tarballs);
    expect(existsSync(join(dir, 'node_modules/@torchsight', variant, 'torchsight.node'))).toBe(true);
    const r = spawnSync(process.execPath, ['tutorial.mjs', MODELS.gpt2], { cwd: dir, env: userEnv(), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.addon).toContain(`node_modules/@torchsight/${variant}/torchsight.node (prebuilt ${variant}`);
    expect(existsSync(join(dir, 'node_modules/torchsight/build'))).toBe(false); // nothing was compiled
    expect(existsSync(join(work, 'cache', 'addons'))).toBe(false);
    const ref = oracle('gpt2', `acts = []
for b in model.transformer.h: b.register_forward_hook(lambda mod, i, o: acts.append(o[0].norm().item()))
logits = model(*batch_inputs([${py(out.ids)}]))[0]
top = logits[0, -1].softmax(-1).topk(5)
result = {'norms': acts, 'top': top.indices.tolist(), 'probs': top.values.tolist()}`);
    expect(out.top).toEqual(ref.top);
    out.norms.forEach((n: number, i: number) => expect(n).toBeCloseTo(ref.norms[i], 3));
    out.probs.forEach((p: number, i: number) => expect(p).toBeCloseTo(ref.probs[i], 5));
  });

  it('refuses a platform package of another torchsight version (its native interface may differ)', () => {
    const dir = join(work, 'app');
    const pkgFile = join(dir, 'node_modules/@torchsight', variant, 'package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
    writeFileSync(pkgFile, JSON.stringify({ ...pkg, version: '0.0.1' }));
    const r = spawnSync(process.execPath, ['tutorial.mjs', MODELS.gpt2], { cwd: dir, env: userEnv({ TORCHSIGHT_BUILD: 'never' }), encoding: 'utf8' });
    writeFileSync(pkgFile, JSON.stringify(pkg));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${variant}: @torchsight/${variant} is version 0.0.1, torchsight is ${pkg.version} (npm install @torchsight/${variant}@${pkg.version})`);
  });

  it('without the platform package and with building turned off, says what it tried', () => {
    const dir = project('bare', tarballs.filter((t) => /torchsight-\d/.test(t)), false);
    const r = spawnSync(process.execPath, ['tutorial.mjs', MODELS.gpt2], { cwd: dir, env: userEnv({ TORCHSIGHT_BUILD: 'never' }), encoding: 'utf8' });
    expect(r.status).toBe(1); // an exception, not a signal
    expect(r.signal).toBeNull();
    expect(r.stderr).toContain('torchsight: the native addon could not be loaded. Tried, in order:');
    expect(r.stderr).toContain(`${variant}: the package @torchsight/${variant} is not installed`);
    expect(r.stderr).toContain('building from source: not attempted (TORCHSIGHT_BUILD=never)');
    // doctor still reports what the machine has, says why the addon did not load, and fails
    const d = spawnSync(process.execPath, [join(dir, 'node_modules/torchsight/dist/cli.js'), 'doctor'], { cwd: dir, env: userEnv({ TORCHSIGHT_BUILD: 'never' }), encoding: 'utf8' });
    expect(d.status).toBe(1);
    expect(d.stdout).toMatch(/^addon {6}not loaded: torchsight: the native addon could not be loaded/);
    expect(d.stdout).toContain(`(needs ${variant})`);
    expect(d.stdout).toContain('prebuilts  none installed');
  });
});
