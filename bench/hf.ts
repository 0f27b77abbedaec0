// The bench's torch 2.x part: torchsight beside what users would pick instead, on the same weights
// (a real transformers GPT2LMHeadModel, saved with save_pretrained and exported with our CLI):
// transformers' forward and cached greedy generate, and nnsight's trace with the same 12 saves
// and in-place patch as ours. bench/run.ts runs this file in a child process whose
// TORCHSIGHT_ADDON is the addon built on the .venv's libtorch 2.x (one process loads one
// libtorch); it can also run alone:
//   TORCHSIGHT_ADDON=build-torch2/Release/torchsight.node npx tsx bench/hf.ts [OUT.json]
// Env as bench/run.ts: BENCH_THREADS, BENCH_ROUNDS, BENCH_QUICK=1 (tiny shape only).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LanguageModel, Tensor, setNumThreads, runtimeInfo } from '../dist/index.js';
import { exporterPython } from '../dist/install/python-env.js';
import { interleaved, lineServer, median, medianInterval, seededIds, time } from './lib/stats.js';

const ROOT = join(import.meta.dirname, '..');
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const QUICK = !!process.env.BENCH_QUICK;
const PY = exporterPython().python;

// the shapes of bench/run.ts's models, with its token counts and sample sizes
const SHAPES = {
  tiny: { shape: 'tiny', tokens: 16, iters: 700, prompt: 8, newTokens: 48, gens: 3, what: 'transformers GPT2LMHeadModel, 12 layers, d=64, 4 heads, vocab 512' },
  gpt2_124m: { shape: '124m', tokens: 32, iters: 112, prompt: 32, newTokens: 64, gens: 1, what: 'transformers GPT2LMHeadModel, GPT-2-small shape (124M parameters)' },
};
type Shape = (typeof SHAPES)[keyof typeof SHAPES];

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, PYTHONPATH: join(ROOT, 'python') } });
  if (r.status !== 0) throw new Error(`bench: ${cmd} ${args.join(' ')} exited ${r.status}`);
}

/** nnsight is a bench-only dependency: installed into the exporter's Python on first use. */
function ensureNnsight(): void {
  if (spawnSync(PY, ['-c', 'import nnsight'], { stdio: 'ignore' }).status === 0) return;
  console.log(`bench: installing nnsight into ${PY} (python/requirements-bench.txt; once, for the bench only)`);
  // -c requirements.txt: nnsight may not move the torch and transformers the exporter pinned
  sh(PY, ['-m', 'pip', 'install', '-q', '-r', 'python/requirements-bench.txt', '-c', 'python/requirements.txt']);
}

/** The saved model (src) and our export of it (out), made once. */
function prepare(s: Shape): { src: string; out: string } {
  const dir = join(ROOT, 'bench', 'models', `hf-gpt2-${s.shape}`);
  const src = join(dir, 'hf');
  const out = join(dir, 'torchsight');
  if (!existsSync(join(src, 'model.safetensors'))) {
    mkdirSync(src, { recursive: true });
    sh(PY, ['bench/hf_bench.py', 'make', src, '--shape', s.shape]);
  }
  if (!existsSync(join(out, 'step.pt'))) {
    console.log(`bench: exporting ${src} with the CLI (once)`);
    sh(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'export', src, out]);
  }
  return { src, out };
}

interface PyRound {
  forward: number[];
  nnsight: number[];
  generate: number[];
  prefill: number[];
  floor_step: number[];
}
interface PyCheck {
  generate: number[];
  saved: number[][];
  shape: number[];
  threads: number;
  attn_implementation: string;
  versions: Record<string, string>;
}

async function benchShape(s: Shape) {
  const { src, out } = prepare(s);
  const model = await LanguageModel.load(out, { device: 'cpu' });
  const ids = seededIds(s.tokens, model.tokenizer.vocabSize - 1, 7);
  const prompt = ids.slice(0, s.prompt);
  const d = Number((model.config as { n_embd: number }).n_embd);
  const patchValues = Array.from({ length: d }, (_, i) => Math.cos(i) * 0.01);
  const patch = Tensor.from(patchValues);
  // transformers >= 5's GPT2Block returns its hidden states bare (no tuple)
  const trace12 = (m: any) => {
    m.transformer.h[6].output.index(':, -1').add_(patch);
    return m.transformer.h.map((b: any) => b.output);
  };
  const fns = {
    forward: async () => (await model.trace(ids, (m: any) => m.output.logits)).dispose(),
    trace12: async () => ((await model.trace(ids, trace12)) as Tensor[]).forEach((t) => t.dispose()),
  };
  const generate = () => model.generate(prompt, { maxNewTokens: s.newTokens, stop: [] });

  const child = spawn(PY, ['-W', 'ignore', 'bench/hf_bench.py', 'serve', src, JSON.stringify({ threads: THREADS, ids, patch: patchValues, prompt, new_tokens: s.newTokens })], {
    cwd: ROOT,
    env: { ...process.env, PYTHONPATH: join(ROOT, 'python'), TRANSFORMERS_VERBOSITY: 'error' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const py = lineServer(child, 'bench/hf_bench.py serve');
  await py.ready;

  // the same work on both sides, or the ratio means nothing: greedy tokens equal, saves close
  const check = await py.ask<PyCheck>('check');
  const ours = (await generate()).tokens as number[];
  if (JSON.stringify(ours) !== JSON.stringify(check.generate))
    throw new Error(`bench: greedy generation differs from transformers' on ${s.shape}:\n ours ${ours}\n  hf  ${check.generate}`);
  const saved = (await model.trace(ids, trace12)) as Tensor[];
  let maxDiff = 0;
  saved.forEach((t, i) => {
    const a = t.data() as Float32Array;
    if (a.length !== check.saved[i].length) throw new Error(`bench: saved block ${i} has ${a.length} values, nnsight's ${check.saved[i].length}`);
    a.forEach((x, j) => {
      const diff = Math.abs(x - check.saved[i][j]);
      maxDiff = Math.max(maxDiff, diff);
      if (diff > 1e-4 + 1e-4 * Math.abs(check.saved[i][j])) throw new Error(`bench: saved block ${i}[${j}] = ${x}, nnsight's ${check.saved[i][j]}`);
    });
    t.dispose();
  });

  for (const f of Object.values(fns)) await time(f, 3);
  await generate();
  const iters = Math.max(1, Math.round(s.iters / ROUNDS));
  const samples: Record<string, number[]> = { forward: [], trace12: [], generate: [], hfForward: [], nnsight: [], hfGenerate: [], hfPrefill: [], floorStep: [] };
  const perRound: Record<string, number[]> = { forward: [], trace: [], generate: [], floor: [] };
  // rounds alternate between the two processes (each waits while the other runs), so the
  // machine's drift over minutes falls on both sides; each ratio is the median of per-round ones
  for (let r = 0; r < ROUNDS; r++) {
    const from = samples.trace12.length;
    const genFrom = samples.generate.length;
    await interleaved(fns, iters, samples);
    samples.generate.push(...(await time(generate, s.gens)));
    const round = await py.ask<PyRound>(JSON.stringify({ iters, gen: s.gens }));
    samples.hfForward.push(...round.forward);
    samples.nnsight.push(...round.nnsight);
    samples.hfGenerate.push(...round.generate);
    samples.hfPrefill.push(...round.prefill);
    samples.floorStep.push(...round.floor_step);
    // the best generate ratio any runtime could reach on these kernels: transformers' own
    // prefill, then nothing but each later token's weight matmuls
    const floorGen = median(round.prefill) + (s.newTokens - 1) * median(round.floor_step);
    perRound.floor.push(floorGen / median(round.generate));
    perRound.forward.push(median(samples.forward.slice(from)) / median(round.forward));
    perRound.trace.push(median(samples.trace12.slice(from)) / median(round.nnsight));
    perRound.generate.push(median(samples.generate.slice(genFrom)) / median(round.generate));
  }
  py.close();
  await model.dispose();
  patch.dispose();
  const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  return {
    model: s.what,
    tokens: s.tokens,
    generation: { prompt_tokens: s.prompt, new_tokens: s.newTokens },
    samples: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.length])),
    median_ms: med,
    // time per generated token, prefill included (both sides run the same prompt and length)
    ms_per_token: { ours: med.generate / s.newTokens, transformers: med.hfGenerate / s.newTokens },
    vs_hf_generate_ratio: median(perRound.generate),
    vs_hf_forward_ratio: median(perRound.forward),
    vs_nnsight_trace_ratio: median(perRound.trace),
    // vs_hf_generate_ratio cannot go below this on the machine that measured it
    hf_generate_floor_ratio: median(perRound.floor),
    interval95: {
      vs_hf_generate_ratio: medianInterval(perRound.generate),
      vs_hf_forward_ratio: medianInterval(perRound.forward),
      vs_nnsight_trace_ratio: medianInterval(perRound.trace),
      hf_generate_floor_ratio: medianInterval(perRound.floor),
    },
    checked: { greedy_tokens_equal: ours.length, saves_max_abs_diff: maxDiff },
    python: { threads: check.threads, attn_implementation: check.attn_implementation, versions: check.versions },
  };
}

async function main() {
  ensureNnsight();
  const threads = setNumThreads(THREADS);
  const details: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(SHAPES)) {
    if (QUICK && name !== 'tiny') continue;
    const t0 = performance.now();
    details[name] = await benchShape(s);
    console.log(`bench: torch 2.x part, ${name}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const result = { libtorch: runtimeInfo().torch, threads, details };
  const outFile = process.argv[2];
  if (outFile) writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
  else console.log(JSON.stringify(result, null, 2));
}

await main();
