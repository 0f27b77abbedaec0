import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// The suite runs once per libtorch the addon is built against: 'torch1.13' on the default build
// (build/, the libtorch discovery finds first: Debian's 1.13 on the README's machine) and 'torch2'
// on build-torch2/ (`npm run build:native:torch2`, against the torch 2.x of the exporter's
// Python, .venv). Without build-torch2 the torch2 project is not run, and says so; CI sets
// TORCHSIGHT_REQUIRE_TORCH2=1 so that a missing build fails instead.
const TORCH2_ADDON = join(import.meta.dirname, 'build-torch2', 'Release', 'torchsight.node');
const haveTorch2 = existsSync(TORCH2_ADDON);
if (!haveTorch2) {
  const why = `the torch2 project is NOT run: ${TORCH2_ADDON} is not built (npm run build:native:torch2; it needs .venv with torch 2.x, which npm run setup makes)`;
  if (process.env.TORCHSIGHT_REQUIRE_TORCH2) throw new Error(why);
  // once, though vitest evaluates this file again for each project that extends it
  const g = globalThis as { torchsightTorch2Warned?: boolean };
  if (!g.torchsightTorch2Warned) console.warn(`\nvitest.config: ${why}\n`);
  g.torchsightTorch2Warned = true;
}

// One test file per core, each with one torch thread (libtorch, the Python oracles and the
// servers the tests spawn read OMP_NUM_THREADS): vitest's default of cores - 1 runs the files one
// at a time on CI's 2 cores, and the suite took 883 s there against 392 s like this.
process.env.OMP_NUM_THREADS ??= '1';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // a native crash fails one file, not the run
    pool: 'forks',
    maxWorkers: availableParallelism(),
    execArgv: ['--expose-gc'],
    globalSetup: ['tests/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      // All but the Hugging Face families: they are exported with the torch 2.x of .venv, and
      // TorchScript files from torch 2.x do not load in libtorch 1.13.
      { extends: true, test: { name: 'torch1.13', exclude: ['tests/hf-families.test.ts'] } },
      // All but cli.test.ts, whose doctor test checks the default addon against Debian's python3
      // torch and OpenBLAS (the wheel's libtorch uses MKL).
      ...(haveTorch2
        ? [{ extends: true, test: { name: 'torch2', env: { TORCHSIGHT_ADDON: TORCH2_ADDON }, exclude: ['tests/cli.test.ts'] } }]
        : []),
    ],
  },
});
