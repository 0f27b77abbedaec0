// Every TORCHSIGHT_* environment switch, read and checked here and nowhere else (the native
// addon reads its four itself, with getenv: they are checked here before it loads). A bad value
// is an error that names the variable and what it accepts. Each reader takes the environment
// (the process's by default), so the installer can resolve against another one.

type Env = NodeJS.ProcessEnv;

/** One switch: its variable, what it does, and the values it accepts. */
export interface Switch {
  name: string;
  doc: string;
  /** accepted values, or a description of them */
  accepts: readonly string[] | string;
  /** who reads it: this package's JavaScript, the native addon, or only scripts and tests */
  readBy: 'js' | 'native' | 'scripts';
}

/** The switches, documented (`torchsight --help` and the README list the user-facing ones). */
export const SWITCHES: readonly Switch[] = [
  { name: 'TORCHSIGHT_ADDON', readBy: 'js', accepts: 'a path to torchsight.node', doc: 'load this addon instead of resolving one (install/loader.ts)' },
  { name: 'TORCHSIGHT_BUILD', readBy: 'js', accepts: ['auto', 'never'], doc: "'never': fail rather than build the addon from source when no binary fits" },
  { name: 'TORCHSIGHT_CACHE', readBy: 'js', accepts: 'a folder', doc: 'where libtorch downloads and source builds go (default $XDG_CACHE_HOME/torchsight or ~/.cache/torchsight)' },
  { name: 'TORCHSIGHT_CMAKE', readBy: 'js', accepts: 'a command', doc: 'the cmake a source build runs (default cmake)' },
  { name: 'TORCHSIGHT_LIBTORCH_MIRROR', readBy: 'js', accepts: 'an http(s) address', doc: 'where libtorch zips are downloaded from (default https://download.pytorch.org)' },
  { name: 'TORCHSIGHT_PYTHON', readBy: 'js', accepts: 'a command', doc: "the Python that `torchsight export` runs (default the repository's .venv, else python3) and whose torch is looked for" },
  { name: 'TORCHSIGHT_LOCATIONS', readBy: 'js', accepts: ['lazy', 'eager'], doc: "'eager': capture each node's source location as it is recorded (~4 us a node) instead of replaying the callback when an error needs one" },
  { name: 'TORCHSIGHT_SITE_GRAPHS', readBy: 'native', accepts: 'an integer >= 0', doc: 'how many site graphs (forwards keeping only the sites a repeated request uses) a model keeps; 0: none (default 8)' },
  { name: 'TORCHSIGHT_INLINE', readBy: 'native', accepts: ['0', '1'], doc: "'0': run the modules' own forward methods instead of the inlined graph (for comparison)" },
  { name: 'TORCHSIGHT_EXECUTOR', readBy: 'native', accepts: ['simple', 'profiling'], doc: "TorchScript's executor for a model's graphs (default simple on the CPU, profiling on CUDA)" },
  { name: 'TORCHSIGHT_JIT_PROFILING', readBy: 'native', accepts: ['0', '1'], doc: "'0': turn TorchScript's profiling mode off for the whole process (read when the addon loads)" },
  { name: 'TORCHSIGHT_API_KEY', readBy: 'js', accepts: 'a key (torchsight keys add)', doc: 'the API key a remote model (LanguageModel.remote, trace { remote }) sends when none is given' },
  { name: 'TORCHSIGHT_SKIP_INSTALL', readBy: 'scripts', accepts: 'any value', doc: 'scripts/install.mjs does nothing (set: skip)' },
  { name: 'TORCHSIGHT_HF_PYTHON', readBy: 'scripts', accepts: 'a command', doc: 'the Python with torch and transformers that tests/tiny-facts.test.ts loads the trained weights into (default .venv/bin/python)' },
  { name: 'TORCHSIGHT_TRAIN_PYTHON', readBy: 'scripts', accepts: 'a command', doc: 'the Python with torch >= 2, tokenizers and transformers that `npm run train:example` trains with (default .venv/bin/python)' },
  { name: 'TORCHSIGHT_REQUIRE_TORCH2', readBy: 'scripts', accepts: 'any value', doc: 'vitest.config.ts fails instead of leaving out the torch2 project when build-torch2/ is missing (CI sets it)' },
  { name: 'TORCHSIGHT_TEST_REDIS', readBy: 'scripts', accepts: 'a loopback redis:// URL', doc: "the redis-server the scale-out tests use, each under a key prefix of its own (.ci/run starts one); unset: they start their own" },
  { name: 'TORCHSIGHT_PLOT_OUT', readBy: 'scripts', accepts: 'a folder', doc: "tests/plot.test.ts copies the plots' screenshots there" },
];

/** The variable's value; unset and empty are the same (undefined). */
function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

function oneOf<T extends string>(env: Env, name: string, values: readonly T[]): T | undefined {
  const v = raw(env, name);
  if (v !== undefined && !values.includes(v as T)) throw new Error(`${name}=${JSON.stringify(v)}: expected ${values.map((x) => `'${x}'`).join(' or ')}`);
  return v as T | undefined;
}

/** TORCHSIGHT_ADDON: an explicit torchsight.node to load. */
export function addonPath(env: Env = process.env): string | undefined {
  return raw(env, 'TORCHSIGHT_ADDON');
}

/** TORCHSIGHT_BUILD: whether the loader may build the addon from source ('never' forbids it). */
export function mayBuildAddon(env: Env = process.env): boolean {
  return oneOf(env, 'TORCHSIGHT_BUILD', ['auto', 'never'] as const) !== 'never';
}

/** TORCHSIGHT_CACHE, when set (install/libtorch.ts's cacheDir makes the default). */
export function cacheOverride(env: Env = process.env): string | undefined {
  return raw(env, 'TORCHSIGHT_CACHE');
}

/** TORCHSIGHT_CMAKE: the cmake command of a source build. */
export function cmakeCommand(env: Env = process.env): string {
  return raw(env, 'TORCHSIGHT_CMAKE') ?? 'cmake';
}

/** TORCHSIGHT_LIBTORCH_MIRROR: the host of PyTorch's libtorch zips. */
export function libtorchMirror(env: Env = process.env): string {
  const v = raw(env, 'TORCHSIGHT_LIBTORCH_MIRROR');
  if (v !== undefined && !/^https?:\/\/\S+$/.test(v)) throw new Error(`TORCHSIGHT_LIBTORCH_MIRROR=${JSON.stringify(v)}: expected an http:// or https:// address`);
  return v ?? 'https://download.pytorch.org';
}

/** TORCHSIGHT_PYTHON, when set: the Python of `torchsight export` (else the repository's .venv, else python3: install/python-env.ts). */
export function pythonCommand(env: Env = process.env): string | undefined {
  return raw(env, 'TORCHSIGHT_PYTHON');
}

/** TORCHSIGHT_LOCATIONS=eager: graphs capture each node's stack as it is recorded. */
export function eagerLocations(env: Env = process.env): boolean {
  return oneOf(env, 'TORCHSIGHT_LOCATIONS', ['lazy', 'eager'] as const) === 'eager';
}

/** TORCHSIGHT_API_KEY: the key remote requests send when the caller gives none. */
export function apiKeyFromEnv(env: Env = process.env): string | undefined {
  return raw(env, 'TORCHSIGHT_API_KEY');
}

/**
 * Checks the switches the native addon reads with getenv (it would take a bad value silently:
 * an unknown executor as the default, a site-graph bound of 'abc' as 0). Called before the
 * addon loads and before each model loads, since both read them then.
 */
export function checkNativeSwitches(env: Env = process.env): void {
  oneOf(env, 'TORCHSIGHT_INLINE', ['0', '1'] as const);
  oneOf(env, 'TORCHSIGHT_EXECUTOR', ['simple', 'profiling'] as const);
  oneOf(env, 'TORCHSIGHT_JIT_PROFILING', ['0', '1'] as const);
  const cap = raw(env, 'TORCHSIGHT_SITE_GRAPHS');
  if (cap !== undefined && !/^\d+$/.test(cap)) throw new Error(`TORCHSIGHT_SITE_GRAPHS=${JSON.stringify(cap)}: expected an integer >= 0`);
}
