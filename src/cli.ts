#!/usr/bin/env node
// The torchsight command: `torchsight export <hf-id-or-path> <outdir> [--dtype float16]`
// (runs the Python exporter, which needs torch and transformers) and `torchsight info`.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pythonDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'python');
const usage = `usage:
  torchsight export <hf-model-id-or-path> <outdir> [--dtype float32|float16|bfloat16] [--example-text TEXT]
  torchsight doctor                 libtorch, CUDA, the addon, BLAS and threads
  torchsight inspect <model-dir> [text]   the module tree with the shapes of one forward
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
  if (cmd === 'doctor' || cmd === 'info') {
    try {
      const { doctor, formatDoctor } = await import('./doctor.js');
      console.log(formatDoctor(doctor()));
      return 0;
    } catch (e) {
      console.error(`torchsight doctor: ${(e as Error).message}`);
      return 1;
    }
  }
  if (cmd === 'inspect') {
    if (!rest[0]) {
      console.error(usage);
      return 2;
    }
    const { inspect } = await import('./doctor.js');
    console.log(await inspect(rest[0], rest.slice(1).join(' ') || undefined));
    return 0;
  }
  console.error(usage);
  return cmd === undefined || cmd === '--help' || cmd === '-h' ? 0 : 2;
}

process.exitCode = await main(process.argv.slice(2));
