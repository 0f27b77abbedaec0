// Picks and loads the native addon at first use. Install scripts are only a convenience (npm
// may not run them), so everything is resolved here, in this order:
//   1. TORCHSIGHT_ADDON: an explicit torchsight.node.
//   2. The package's own source build (build/Release, from `npm run build:native`): it carries an
//      rpath to the libtorch it was built against.
//   3. For each libtorch found (see libtorch.ts), best first: the prebuilt package for its variant
//      (its libraries are preloaded by absolute path, then the addon), else a source build of it
//      in the cache.
//   4. Nothing matched: build from source against the first libtorch with cmake files, into the
//      cache, saying so on stderr (TORCHSIGHT_BUILD=never turns this into an error).
// A failure says everything that was tried.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFromSource, sourceBuildDir } from './build.js';
import { discover, preloadList, variantOf, type Libtorch } from './libtorch.js';
import { PREBUILT, prebuiltDir } from './prebuilt.js';
import { addonPath, mayBuildAddon } from '../settings.js';

const require = createRequire(import.meta.url);

/** The package root: two levels above this file in both src/install and dist/install. */
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

export interface AddonChoice {
  /** torchsight.node to load. */
  path: string;
  /** How it was chosen: 'TORCHSIGHT_ADDON', 'source build (package)', 'prebuilt <variant>', 'source build (cache)', 'built now'. */
  how: string;
  /** The libtorch it runs on, when known. */
  libtorch?: Libtorch;
  /** Libraries to load first (prebuilt binaries only), and the shim that loads them. */
  preload?: { shim: string; libs: string[] };
}

export interface Resolution {
  choice?: AddonChoice;
  /** Libtorch to build against when nothing matched. */
  buildCandidate?: Libtorch;
  tried: string[];
}

/** The choice of the addon in `dir` (a platform package or a source build in the cache), run on `t`. */
function choiceIn(dir: string, how: string, t: Libtorch): AddonChoice {
  return { path: join(dir, 'torchsight.node'), how, libtorch: t, preload: { shim: join(dir, 'torchsight_preload.node'), libs: preloadList(t) } };
}

/** Finds the addon to load without loading anything. */
export function resolveAddon(env: NodeJS.ProcessEnv = process.env): Resolution {
  const tried: string[] = [];
  const explicit = addonPath(env);
  if (explicit) {
    if (existsSync(explicit)) return { choice: { path: explicit, how: 'TORCHSIGHT_ADDON' }, tried };
    tried.push(`TORCHSIGHT_ADDON=${explicit}: not found`);
  }
  for (const b of ['Release', 'Debug']) {
    const p = join(packageRoot, 'build', b, 'torchsight.node');
    if (existsSync(p)) return { choice: { path: p, how: `source build (${join('build', b)})` }, tried };
  }
  tried.push(`source build in the package (${join(packageRoot, 'build/Release')}): none`);

  const d = discover(env);
  tried.push(...d.tried.map((t) => `libtorch: ${t}`));
  const version = packageVersion();
  let buildCandidate: Libtorch | undefined;
  for (const t of d.found) {
    const variant = variantOf(t);
    if (!t.cxx11Abi) tried.push(`${variant}: libtorch ${t.version} uses the pre-C++11 ABI; every prebuilt uses the new one`);
    else if (!PREBUILT[variant]) tried.push(`${variant}: torchsight ships no prebuilt for it (it ships ${Object.keys(PREBUILT).join(', ')})`);
    else {
      const dir = prebuiltDir(variant);
      // the native interface changes between versions: a leftover platform package must not load
      const pv = dir ? (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: string }).version : undefined;
      if (dir && pv !== version) tried.push(`${variant}: @torchsight/${variant} is version ${pv}, torchsight is ${version} (npm install @torchsight/${variant}@${version})`);
      else if (dir && existsSync(join(dir, 'torchsight.node'))) return { choice: choiceIn(dir, `prebuilt ${variant}`, t), tried };
      else tried.push(`${variant}: the package @torchsight/${variant} is not installed (npm install @torchsight/${variant})`);
    }
    const cached = sourceBuildDir(t, version, env);
    if (existsSync(join(cached, 'torchsight.node'))) return { choice: choiceIn(cached, 'source build (cache)', t), tried };
    tried.push(`${variant}: no source build in ${cached}`);
    if (!buildCandidate && t.cmakeDir) buildCandidate = t;
  }
  if (!d.found.length) tried.push('no libtorch found: install one (Debian: apt-get install libtorch-dev; or pip install torch; or npx torchsight libtorch download)');
  return { buildCandidate, tried };
}

/** Loads `choice`: its libtorch first when it is a prebuilt, then the addon. */
export function loadChoice<T>(choice: AddonChoice): T {
  if (choice.preload) {
    const shim = require(choice.preload.shim) as { preload(paths: string[]): string | null };
    const err = shim.preload(choice.preload.libs);
    if (err) throw new Error(`loading libtorch ${choice.libtorch?.version} from ${choice.libtorch?.libDir} failed: ${err}`);
  }
  return require(choice.path) as T;
}

export interface LoadedAddon<T> {
  addon: T;
  choice: AddonChoice;
}

/** Builds the addon against `t` into the cache, saying so; the choice that loads it. */
function buildChoice(t: Libtorch, why: string, say: (line: string) => void, env: NodeJS.ProcessEnv): AddonChoice {
  say(`${why}; building from source against libtorch ${t.version} (${variantOf(t)}, from ${t.source}) into the cache (set TORCHSIGHT_BUILD=never to stop this)`);
  const dir = buildFromSource(t, packageRoot, packageVersion(), say, env);
  say(`built ${join(dir, 'torchsight.node')}`);
  return choiceIn(dir, 'built now', t);
}

/** Resolves, builds when needed and allowed, and loads the addon; throws with what was tried. */
export function loadAddon<T>(env: NodeJS.ProcessEnv = process.env, say: (line: string) => void = (l) => process.stderr.write(`torchsight: ${l}\n`)): LoadedAddon<T> {
  const r = resolveAddon(env);
  const tried = [...r.tried];
  const mayBuild = mayBuildAddon(env);
  const attempt = (choice: AddonChoice): LoadedAddon<T> | undefined => {
    try {
      return { addon: loadChoice<T>(choice), choice };
    } catch (e) {
      tried.push(`${choice.path} (${choice.how}): ${(e as Error).message}`);
      return undefined;
    }
  };
  const build = (t: Libtorch, why: string): LoadedAddon<T> | undefined => {
    try {
      return attempt(buildChoice(t, why, say, env));
    } catch (e) {
      tried.push(`building from source against libtorch ${t.version}: ${(e as Error).message}`);
      return undefined;
    }
  };
  let loaded = r.choice ? attempt(r.choice) : undefined;
  // A prebuilt that does not load on this libtorch (a patch release that changed a symbol, say):
  // the same libtorch is already in the process, so a build against it is the way out.
  const failed = r.choice?.how.startsWith('prebuilt') ? r.choice.libtorch : undefined;
  if (!loaded && failed?.cmakeDir && mayBuild) loaded = build(failed, `the prebuilt binary did not load on libtorch ${failed.version}`);
  if (!loaded && !r.choice && r.buildCandidate && mayBuild) loaded = build(r.buildCandidate, `no prebuilt binary for libtorch ${r.buildCandidate.version}`);
  if (!loaded && !mayBuild && (r.buildCandidate || failed)) tried.push('building from source: not attempted (TORCHSIGHT_BUILD=never)');
  if (loaded) return loaded;
  throw new Error(
    `torchsight: the native addon could not be loaded. Tried, in order:\n  - ${tried.join('\n  - ')}\n` +
      `See 'npx torchsight doctor' and the README's Install section.`,
  );
}
