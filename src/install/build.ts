// Builds the addon from the package's own sources against one libtorch, with plain cmake (no
// cmake-js, so a user needs only cmake and a C++17 compiler): the fallback when no prebuilt
// binary matches the libtorch on the machine. The result goes to the cache, one folder per
// libtorch variant and torchsight version, and is reused by every later process.
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { cacheDir, variantOf, type Libtorch } from './libtorch.js';
import { cmakeCommand } from '../settings.js';

const require = createRequire(import.meta.url);

/** The folder a source build for `t` lives in. */
export function sourceBuildDir(t: Libtorch, packageVersion: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(env), 'addons', `${variantOf(t)}-${t.version.replace(/[^\w.+-]/g, '_')}-torchsight${packageVersion}`);
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * Configures and compiles the addon for `t` from `packageRoot`'s native/ and CMakeLists.txt.
 * Returns the folder holding torchsight.node and torchsight_preload.node; throws with the end of
 * the build log on failure. `say` gets one line per stage. `env` is the environment the loader
 * resolved with (the cache folder comes from it, so the build lands where resolveAddon looks).
 */
export function buildFromSource(t: Libtorch, packageRoot: string, packageVersion: string, say: (line: string) => void, env: NodeJS.ProcessEnv = process.env): string {
  if (!t.cmakeDir) throw new Error(`libtorch ${t.version} from ${t.source} has no TorchConfig.cmake (headers and cmake files), so nothing can be built against it`);
  const cmake = cmakeCommand(env);
  const probe = spawnSync(cmake, ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) throw new Error(`building from source needs cmake (${cmake}: ${probe.error?.message ?? 'failed'}); Debian: apt-get install cmake g++ make`);
  const out = sourceBuildDir(t, packageVersion, env);
  const work = join(out, `build-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const log = join(out, 'build.log');
  // absolute paths (node-addon-api's include_dir is relative to the working directory)
  const includes = [dirname(require.resolve('node-api-headers/include/node_api.h')), dirname(require.resolve('node-addon-api/napi.h'))].join(';');
  const cmakeEnv: NodeJS.ProcessEnv = { ...env, TORCH_DIR: t.cmakeDir };
  delete cmakeEnv.LIBTORCH; // the CMakeLists looks at LIBTORCH first: build against exactly `t`
  delete cmakeEnv.CMAKE_PREFIX_PATH;
  const fd = openSync(log, 'w');
  try {
    const run = (args: string[], what: string) => {
      say(what);
      const r = spawnSync(cmake, args, { stdio: ['ignore', fd, fd], env: cmakeEnv });
      if (r.status !== 0) throw new Error(`${what} failed (log: ${log}):\n${tail(log)}`);
    };
    run(['-S', packageRoot, '-B', work, '-DCMAKE_BUILD_TYPE=Release', `-DCMAKE_JS_INC=${includes}`, `-DTORCH_DIR=${t.cmakeDir}`], `configuring against libtorch ${t.version} (${t.cmakeDir})`);
    run(['--build', work, '--parallel', String(Math.max(1, cpus().length))], `compiling (${cpus().length} jobs; a few minutes, once)`);
  } finally {
    closeSync(fd);
  }
  // Copy then rename, so a process loading the cache never sees half a file.
  for (const f of ['torchsight.node', 'torchsight_preload.node']) {
    const built = [join(work, f), join(work, 'Release', f)].find((p) => existsSync(p));
    if (!built) throw new Error(`the build finished without ${f} (log: ${log})`);
    copyFileSync(built, join(out, `${f}.${process.pid}`));
    renameSync(join(out, `${f}.${process.pid}`), join(out, f));
  }
  rmSync(work, { recursive: true, force: true });
  return out;
}
