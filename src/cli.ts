#!/usr/bin/env node
// The torchsight command: `torchsight export <hf-id-or-path> <outdir> [--dtype float16]`
// (runs the Python exporter, which needs torch and transformers) and `torchsight info`.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pythonDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'python');
const usage = `usage:
  torchsight export <hf-model-id-or-path> <outdir> [--dtype float32|float16|bfloat16] [--example-text TEXT]
  torchsight info
environment: TORCHSIGHT_PYTHON picks the Python (default: python3)`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === 'export') {
    if (rest.length < 2) {
      console.error(usage);
      return 2;
    }
    const python = process.env.TORCHSIGHT_PYTHON ?? 'python3';
    const r = spawnSync(python, ['-m', 'torchsight_export', ...rest], {
      stdio: 'inherit',
      env: { ...process.env, PYTHONPATH: [pythonDir, process.env.PYTHONPATH].filter(Boolean).join(':') },
    });
    if (r.error) {
      console.error(`torchsight export: cannot run ${python}: ${r.error.message}`);
      return 1;
    }
    return r.status ?? 1;
  }
  if (cmd === 'info') {
    const { runtimeInfo } = await import('./index.js');
    const info = runtimeInfo();
    console.log(`libtorch ${info.torch}; CUDA ${info.cudaAvailable ? `available (${info.cudaDevices} device(s))` : 'not available'}; threads ${info.threads}`);
    return 0;
  }
  console.error(usage);
  return cmd === undefined || cmd === '--help' || cmd === '-h' ? 0 : 2;
}

process.exitCode = await main(process.argv.slice(2));
