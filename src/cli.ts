#!/usr/bin/env node
// The torchsight command. Long work (downloads, loading, generation) shows a progress bar on
// stderr; stdout carries only the result.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ProgressBar } from './progress.js';

const pythonDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'python');
const usage = `usage:
  torchsight doctor                       libtorch found, CUDA and devices, the addon loaded, BLAS, threads
  torchsight inspect <model-dir> [text]   the module tree with the shapes of one forward
  torchsight generate <model-dir> <prompt> [--max-new-tokens N] [--temperature T] [--seed S]
  torchsight export <hf-model-id-or-path> <outdir> [--dtype float32|float16|bfloat16] [--example-text TEXT]
  torchsight libtorch download [--cuda cpu|12.8|13.0|12.x] [--version 2.11.0] [--mirror URL | --url ZIP]
                                          PyTorch's libtorch into the cache, where torchsight finds it
  torchsight libtorch list                every libtorch found, best first, and the prebuilt each needs
  torchsight build                        build the addon from source against the libtorch found (cmake, g++)
  torchsight serve <model-dir>[=<name>] ... [--host H] [--port P] [--keys FILE] [--device D] [limits]
                                          serve models over HTTP (torchsight serve --help for the limits)
  torchsight serve --redis URL [--keys FILE] [limits]
                                          a front: HTTP, keys, limits; requests go on Redis queues for workers
  torchsight worker <model-dir>[=<name>] ... --redis URL [--device cuda:N]
                                          run the jobs of these models off Redis (torchsight worker --help)
  torchsight keys add|list|remove <file> [<name>] [--models a,b] [--concurrency N] [--rate N]
                                          API keys for serve (only their hashes are stored)
environment: TORCHSIGHT_PYTHON (the Python for export; default the repository's .venv, else python3), LIBTORCH, TORCHSIGHT_CACHE, TORCHSIGHT_BUILD=never`;

/** A load-progress callback that draws on `bar`. */
function loadBar(bar: ProgressBar) {
  return (p: { phase: string; done: number; total: number }) => {
    if (p.phase === 'weights' || p.phase === 'step') bar.update(`loading ${p.phase === 'weights' ? 'model.pt' : 'step.pt '}`, p.done, p.total);
    if (p.phase === 'ready') bar.done();
  };
}

async function libtorchCommand(rest: string[]): Promise<number> {
  const [sub, ...args] = rest;
  if (sub === 'list') {
    const { discover, variantOf } = await import('./install/libtorch.js');
    const { PREBUILT, prebuiltDir } = await import('./install/prebuilt.js');
    const d = discover();
    for (const t of d.found) {
      const v = variantOf(t);
      const pre = !PREBUILT[v] ? 'no prebuilt (source build)' : prebuiltDir(v) ? `prebuilt ${v} installed` : `prebuilt ${v} not installed`;
      console.log(`${t.version}\t${t.cuda ? `CUDA ${t.cuda}` : 'CPU'}\t${t.source}\t${t.libDir}\t${pre}`);
    }
    if (!d.found.length) console.log(`none found. Looked at:\n  ${d.tried.join('\n  ')}`);
    return d.found.length ? 0 : 1;
  }
  if (sub === 'download') {
    const { values } = parseArgs({ args, options: { cuda: { type: 'string' }, version: { type: 'string' }, mirror: { type: 'string' }, url: { type: 'string' } } });
    const { downloadLibtorch } = await import('./install/download.js');
    const { variantOf } = await import('./install/libtorch.js');
    const bar = new ProgressBar(process.stderr, 'bytes');
    const t = await downloadLibtorch({
      ...values,
      onProgress: (got, total) => bar.update('downloading libtorch', got, total),
      onExtract: () => {
        bar.done();
        process.stderr.write('unpacking...\n');
      },
    });
    console.log(`libtorch ${t.version} (${t.cuda ? `CUDA ${t.cuda}` : 'CPU'}) in ${t.libDir}; torchsight uses it with ${variantOf(t)}`);
    return 0;
  }
  console.error(usage);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === 'export') {
    if (rest.length < 2) {
      console.error(usage);
      return 2;
    }
    const { exporterPython } = await import('./install/python-env.js');
    const { python, how } = exporterPython();
    process.stderr.write(`torchsight export: Python ${python} (${how})\n`);
    const r = spawnSync(python, ['-m', 'torchsight_export', ...rest], {
      stdio: 'inherit',
      env: { ...process.env, PYTHONPATH: [pythonDir, process.env.PYTHONPATH].filter(Boolean).join(':') },
    });
    if (r.error) {
      console.error(`torchsight export: cannot run ${python} (${how}): ${r.error.message}; run 'npm run setup' or set TORCHSIGHT_PYTHON`);
      return 1;
    }
    return r.status ?? 1;
  }
  if (cmd === 'doctor' || cmd === 'info') {
    const { doctor, formatDoctor } = await import('./doctor.js');
    const r = doctor();
    console.log(formatDoctor(r));
    return r.loaded ? 0 : 1;
  }
  if (cmd === 'inspect') {
    if (!rest[0]) {
      console.error(usage);
      return 2;
    }
    const { inspect } = await import('./doctor.js');
    console.log(await inspect(rest[0], rest.slice(1).join(' ') || undefined, { onProgress: loadBar(new ProgressBar(process.stderr, 'bytes')) }));
    return 0;
  }
  if (cmd === 'generate') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { 'max-new-tokens': { type: 'string', default: '20' }, temperature: { type: 'string', default: '0' }, seed: { type: 'string' }, device: { type: 'string' } },
    });
    if (positionals.length < 2) {
      console.error(usage);
      return 2;
    }
    const { LanguageModel } = await import('./model.js');
    const prompt = positionals.slice(1).join(' ');
    const bar = new ProgressBar(process.stderr, 'bytes');
    const model = await LanguageModel.load(positionals[0], { device: values.device, onProgress: loadBar(bar) });
    try {
      const steps = new ProgressBar(process.stderr, 'count');
      const out = await model.generate(prompt, {
        maxNewTokens: Number(values['max-new-tokens']),
        temperature: Number(values.temperature),
        seed: values.seed === undefined ? undefined : Number(values.seed),
        onProgress: (p) => steps.update('generating', p.step, p.maxNewTokens),
      });
      steps.done();
      console.log(prompt + (out.text as string));
    } finally {
      await model.dispose();
    }
    return 0;
  }
  if (cmd === 'libtorch') return libtorchCommand(rest);
  if (cmd === 'serve') {
    const { serveCommand, SERVE_USAGE } = await import('./serve/command.js');
    if (rest.includes('--help') || rest.includes('-h')) {
      console.log(SERVE_USAGE);
      return 0;
    }
    return serveCommand(rest);
  }
  if (cmd === 'worker') {
    const { workerCommand, WORKER_USAGE } = await import('./scale/command.js');
    if (rest.includes('--help') || rest.includes('-h')) {
      console.log(WORKER_USAGE);
      return 0;
    }
    return workerCommand(rest);
  }
  if (cmd === 'keys') return (await import('./serve/keys.js')).keysCommand(rest, (l) => console.log(l));
  if (cmd === 'build') {
    const { discover } = await import('./install/libtorch.js');
    const { buildFromSource } = await import('./install/build.js');
    const { packageRoot, packageVersion } = await import('./install/loader.js');
    const t = discover().found.find((x) => x.cmakeDir);
    if (!t) throw new Error('no libtorch with cmake files found; see `torchsight libtorch list`');
    const dir = buildFromSource(t, packageRoot, packageVersion(), (l) => process.stderr.write(`${l}\n`));
    console.log(`built ${join(dir, 'torchsight.node')} against libtorch ${t.version} (${t.source})`);
    return 0;
  }
  console.error(usage);
  return cmd === undefined || cmd === '--help' || cmd === '-h' ? 0 : 2;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  console.error(`torchsight ${process.argv[2] ?? ''}: ${(e as Error).message}`);
  process.exitCode = 1;
}
