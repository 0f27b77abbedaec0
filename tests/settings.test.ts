// The TORCHSIGHT_* switches: each keeps its default and meaning, and a bad value is an error
// that names the variable.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addonPath, cacheOverride, checkNativeSwitches, cmakeCommand, eagerLocations, libtorchMirror, mayBuildAddon, pythonCommand, SWITCHES } from '../src/settings.js';
import { cacheDir } from '../src/install/libtorch.js';
import { libtorchUrl } from '../src/install/download.js';
import { ROOT } from './helpers.js';

describe('settings', () => {
  it('gives each switch its default when unset or empty, and its value when set', () => {
    for (const env of [{}, { TORCHSIGHT_BUILD: '', TORCHSIGHT_LOCATIONS: '', TORCHSIGHT_CMAKE: '', TORCHSIGHT_PYTHON: '' }]) {
      expect(mayBuildAddon(env)).toBe(true);
      expect(eagerLocations(env)).toBe(false);
      expect(cmakeCommand(env)).toBe('cmake');
      expect(pythonCommand(env)).toBeUndefined();
      expect(addonPath(env)).toBeUndefined();
      expect(cacheOverride(env)).toBeUndefined();
      expect(libtorchMirror(env)).toBe('https://download.pytorch.org');
    }
    expect(mayBuildAddon({ TORCHSIGHT_BUILD: 'never' })).toBe(false);
    expect(mayBuildAddon({ TORCHSIGHT_BUILD: 'auto' })).toBe(true);
    expect(eagerLocations({ TORCHSIGHT_LOCATIONS: 'eager' })).toBe(true);
    expect(eagerLocations({ TORCHSIGHT_LOCATIONS: 'lazy' })).toBe(false);
    expect(cmakeCommand({ TORCHSIGHT_CMAKE: '/opt/cmake/bin/cmake' })).toBe('/opt/cmake/bin/cmake');
    expect(cacheDir({ TORCHSIGHT_CACHE: '/tmp/ts-cache' })).toBe('/tmp/ts-cache');
    expect(cacheDir({ XDG_CACHE_HOME: '/tmp/xdg' })).toBe('/tmp/xdg/torchsight');
    expect(libtorchMirror({ TORCHSIGHT_LIBTORCH_MIRROR: 'http://mirror.local' })).toBe('http://mirror.local');
  });

  it('refuses a bad value with an error naming the variable and what it accepts', () => {
    expect(() => mayBuildAddon({ TORCHSIGHT_BUILD: 'nver' })).toThrow(`TORCHSIGHT_BUILD="nver": expected 'auto' or 'never'`);
    expect(() => eagerLocations({ TORCHSIGHT_LOCATIONS: 'yes' })).toThrow(`TORCHSIGHT_LOCATIONS="yes": expected 'lazy' or 'eager'`);
    expect(() => libtorchMirror({ TORCHSIGHT_LIBTORCH_MIRROR: 'mirror.local' })).toThrow(/TORCHSIGHT_LIBTORCH_MIRROR="mirror.local": expected an http/);
    expect(() => checkNativeSwitches({ TORCHSIGHT_SITE_GRAPHS: 'many' })).toThrow('TORCHSIGHT_SITE_GRAPHS="many": expected an integer >= 0');
    expect(() => checkNativeSwitches({ TORCHSIGHT_SITE_GRAPHS: '-1' })).toThrow(/TORCHSIGHT_SITE_GRAPHS/);
    expect(() => checkNativeSwitches({ TORCHSIGHT_EXECUTOR: 'fast' })).toThrow(`TORCHSIGHT_EXECUTOR="fast": expected 'simple' or 'profiling'`);
    expect(() => checkNativeSwitches({ TORCHSIGHT_INLINE: 'no' })).toThrow(/TORCHSIGHT_INLINE/);
    expect(() => checkNativeSwitches({ TORCHSIGHT_JIT_PROFILING: 'off' })).toThrow(/TORCHSIGHT_JIT_PROFILING/);
    expect(() => checkNativeSwitches({ TORCHSIGHT_SITE_GRAPHS: '0', TORCHSIGHT_EXECUTOR: 'simple', TORCHSIGHT_INLINE: '0', TORCHSIGHT_JIT_PROFILING: '1' })).not.toThrow();
  });

  it('the download address takes the mirror from the environment', () => {
    const prev = process.env.TORCHSIGHT_LIBTORCH_MIRROR;
    process.env.TORCHSIGHT_LIBTORCH_MIRROR = 'http://mirror.local';
    try {
      expect(libtorchUrl('2.11.0', 'cpu').startsWith('http://mirror.local/')).toBe(true);
    } finally {
      if (prev === undefined) delete process.env.TORCHSIGHT_LIBTORCH_MIRROR;
      else process.env.TORCHSIGHT_LIBTORCH_MIRROR = prev;
    }
  });

  it('is the only reader of TORCHSIGHT_* in src/, and documents every switch the code reads', () => {
    const files = readdirSync(join(ROOT, 'src'), { recursive: true }).map(String).filter((f) => f.endsWith('.ts') && f !== 'settings.ts');
    for (const f of files) expect(readFileSync(join(ROOT, 'src', f), 'utf8'), f).not.toMatch(/env(?:\.|\[['"])TORCHSIGHT_/);
    const documented = new Set(SWITCHES.map((s) => s.name));
    const read = new Set<string>();
    for (const dir of ['native', 'scripts', 'tests'])
      for (const f of readdirSync(join(ROOT, dir), { recursive: true }).map(String).filter((x) => /\.(cpp|h|mjs|ts)$/.test(x)))
        for (const m of readFileSync(join(ROOT, dir, f), 'utf8').matchAll(/(?:getenv\("|process\.env\.)(TORCHSIGHT_[A-Z_]+)/g)) read.add(m[1]);
    expect([...read].filter((n) => !documented.has(n))).toEqual([]);
  });
});
