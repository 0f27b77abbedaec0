// npm run bench: torchsight's costs as ratios measured in one run, so a noisy machine cancels
// out. Writes bench/results.json and docs/benchmarks.md.
//   BENCH_THREADS (default: all cores), BENCH_ROUNDS (default 7), BENCH_QUICK=1 (tiny model only)
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LanguageModel, Tensor, setNumThreads, runtimeInfo } from '../dist/index.js';
import { native, type NativeModel, type WireTrace } from '../dist/native.js';
import { makeBatch } from '../dist/inputs.js';
import { PackWriter } from '../dist/trace/wire.js';
// the packed form of a graph with no nodes
const emptyGraph = () => new PackWriter().finish(0);
import { Graph } from '../dist/trace/graph.js';

const ROOT = join(import.meta.dirname, '..');
const PY = process.env.TORCHSIGHT_PYTHON ?? '/usr/bin/python3';
// torch intra-op threads; OpenBLAS keeps its default (all cores). On the 2-core machine here
// torch=1 with BLAS=2 was fastest (124M: 61 ms vs 66 ms with torch=2; tiny: 0.99 vs 1.36 ms).
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const QUICK = !!process.env.BENCH_QUICK;

const MODELS = {
  tiny: { dir: join(ROOT, 'models', 'gpt2'), tokens: 16, iters: 700, what: 'GPT-2 shape, 12 layers, d=64, vocab 512' },
  gpt2_124m: { dir: join(ROOT, 'bench', 'models', 'gpt2-124m'), tokens: 32, iters: 112, what: 'GPT-2-small shape, 12 layers, d=768, 12 heads, vocab 50257 (124M parameters)' },
};

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, PYTHONPATH: join(ROOT, 'python'), ...env }, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function prepare(): void {
  sh('bash', ['scripts/make-models.sh']);
  if (!QUICK && !existsSync(join(MODELS.gpt2_124m.dir, 'step.pt'))) {
    console.log('bench: exporting the 124M GPT-2 shape (once, ~20 s)');
    sh(PY, ['-m', 'torchsight_testing.examples', '--arch', 'gpt2', '--out', MODELS.gpt2_124m.dir, '--layers', '12', '--d-model', '768', '--heads', '12', '--vocab', '50257', '--tokenizer-vocab', '1000']);
  }
  for (const m of Object.values(MODELS)) {
    if (QUICK && m === MODELS.gpt2_124m) continue;
    if (!existsSync(join(m.dir, 'plain.pt'))) sh(PY, ['bench/python_bench.py', 'plain', m.dir]);
  }
}

/** bench/python_bench.py serve: one Python process, one round per request. */
function pythonServer(dir: string, args: object) {
  const child = spawn(PY, ['bench/python_bench.py', 'serve', dir, JSON.stringify(args)], { cwd: ROOT, env: { ...process.env, PYTHONPATH: join(ROOT, 'python') }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error('bench/python_bench.py serve ended early');
    return r.value as string;
  };
  return {
    ready: next().then((l) => {
      if (l !== 'ready') throw new Error(`python_bench: expected 'ready', got ${l}`);
    }),
    async round(iters: number): Promise<{ plain: number[]; hooked: number[]; threads: number }> {
      child.stdin!.write(`${iters}\n`);
      return JSON.parse(await next());
    },
    close: () => child.stdin!.end(),
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * A 95% interval for the median of `xs` (percentile bootstrap, 2000 resamples, a fixed seed so
 * a re-render gives the same figures). The samples drift with the machine, so they are not
 * independent and the interval is a guide to the noise, not a guarantee.
 */
function medianInterval(xs: number[]): [number, number] {
  let seed = 0x9e3779b9;
  const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const meds: number[] = [];
  const r = new Array<number>(xs.length);
  for (let b = 0; b < 2000; b++) {
    for (let i = 0; i < xs.length; i++) r[i] = xs[Math.floor(rand() * xs.length)];
    meds.push(median(r));
  }
  meds.sort((a, b) => a - b);
  return [meds[Math.floor(meds.length * 0.025)], meds[Math.floor(meds.length * 0.975) - 1]];
}

async function time(fn: () => Promise<unknown>, iters: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

function seededIds(n: number, vocab: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % vocab;
  });
}

async function benchModel(name: keyof typeof MODELS) {
  const spec = MODELS[name];
  const model = await LanguageModel.load(spec.dir, { device: 'cpu' });
  const plain: NativeModel = await native().loadModel(join(spec.dir, 'plain.pt'), 'cpu', '');
  plain.configure({ vocabSize: model.manifest.vocabSize });
  const ids = seededIds(spec.tokens, model.tokenizer.vocabSize - 1, 7);
  const trace: WireTrace = { ...makeBatch([{ ids, mask: ids.map(() => 1) }], model.padId), invokes: [[0, 1]], begin: 0, end: 0, stop: false };
  const d = Number((model.config as { n_embd: number }).n_embd);
  const patch = Tensor.from(Array.from({ length: d }, (_, i) => Math.cos(i) * 0.01));
  const intervention = (m: any) => {
    m.transformer.h[6].output[0].index(':, -1').add_(patch);
    return m.transformer.h.map((b: any) => b.output[0]);
  };
  const fns = {
    plain: () => plain.run({ traces: [trace], graph: emptyGraph() }),
    idleSites: () => model.native.run({ traces: [trace], graph: emptyGraph() }),
    emptyTrace: () => model.trace(ids, () => undefined),
    trace12: async () => {
      const acts = await model.trace(ids, intervention);
      acts.forEach((a: Tensor) => a.dispose());
    },
  };
  // recording alone (JS side of a trace): no forward
  const recordOnly = async () => {
    const g = new Graph(model.padId);
    model.recordTrace(g, ids, intervention);
    g.request(model.native);
  };
  const samples: Record<string, number[]> = { plain: [], idleSites: [], emptyTrace: [], trace12: [], record: [], pyPlain: [], pyHooked: [] };
  for (const f of Object.values(fns)) await time(f, 3); // warm-up (profiling executor, caches)
  const iters = Math.max(1, Math.round(spec.iters / ROUNDS));
  // Python's rounds interleave with ours (it waits while we run, and we while it runs), so the
  // machine's drift over minutes falls on both sides of the ratio alike.
  const python = pythonServer(spec.dir, { threads: THREADS, ids, patch: patch.toArray() });
  let pyThreads = 0;
  await python.ready;
  // Ours interleave call by call (plain, sites idle, empty trace, trace), so sample i of each
  // kind was taken within a few forwards of the others: a ratio or difference is taken
  // per i and the headline is the median of those (the machine's drift moves both sides of a
  // pair alike; a difference of two medians taken apart would carry it).
  const vsPython: number[] = [];
  const vsPythonPlain: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const from = samples.trace12.length;
    // the order turns every iteration: a call's time depends on what ran just before it (the
    // OpenBLAS thread may be spinning or asleep, caches warm or not), and in a fixed order that
    // bias falls on one kind (it made the plain forward look ~5% slower than the traced one)
    const kinds = Object.entries(fns);
    for (let i = 0; i < iters; i++)
      for (let j = 0; j < kinds.length; j++) {
        const [k, f] = kinds[(i + j) % kinds.length];
        samples[k].push((await time(f, 1))[0]);
      }
    samples.record.push(...(await time(recordOnly, iters)));
    const round = await python.round(iters);
    samples.pyPlain.push(...round.plain);
    samples.pyHooked.push(...round.hooked);
    pyThreads = round.threads;
    vsPython.push(median(samples.trace12.slice(from)) / median(round.hooked));
    vsPythonPlain.push(median(samples.plain.slice(from)) / median(round.plain));
  }
  python.close();
  const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  const paired = (a: number[], b: number[], f: (x: number, y: number) => number) => median(a.map((x, i) => f(x, b[i])));
  const pairedInterval = (a: number[], b: number[], f: (x: number, y: number) => number) => medianInterval(a.map((x, i) => f(x, b[i])));
  const ratio = (k: string) => paired(samples[k], samples.plain, (x, y) => x / y);
  const ratioInterval = (k: string) => pairedInterval(samples[k], samples.plain, (x, y) => x / y);
  const py = { plain_ms: med.pyPlain, hooked_ms: med.pyHooked, threads: pyThreads };
  // peak memory of a trace vs a plain forward, each in its own process
  const mem = (mode: string) => Number(sh(process.execPath, ['--import', 'tsx', 'bench/mem.ts', spec.dir, mode, String(spec.tokens), String(THREADS)]).trim());
  const peak = { plainKB: mem('plain'), traceKB: mem('trace12') };
  // generation: tokens per second with and without the cache, and steered vs plain
  // single-token decode of the 124M shape is memory-bound (all weights stream once a step), so
  // the cache pays off with length: 32 prompt tokens and 64 new ones show it
  const genPrompt = ids.slice(0, name === 'tiny' ? 8 : 32);
  const newTokens = name === 'tiny' ? 48 : 64;
  const steerVec = Tensor.from(Array.from({ length: d }, (_, i) => Math.sin(i) * 0.05));
  const genFns = {
    cached: () => model.generate(genPrompt, { maxNewTokens: newTokens, stop: [] }),
    uncached: () => model.generate(genPrompt, { maxNewTokens: newTokens, useCache: false }),
    steered: () =>
      model.generate(genPrompt, { maxNewTokens: newTokens }, (m, gen) => {
        gen.all((m) => {
          m.transformer.h[6].output[0].add_(steerVec);
        });
      }),
  };
  const genSamples: Record<string, number[]> = { cached: [], uncached: [], steered: [] };
  const genIters = name === 'tiny' ? 3 : 1;
  for (const f of Object.values(genFns)) await f();
  // as above: interleaved call by call in a turning order, and the steered/plain ratio taken per
  // iteration (the median of those), so the machine's drift between generations cancels
  const genKinds = Object.entries(genFns);
  for (let i = 0; i < Math.min(ROUNDS, 5) * genIters; i++)
    for (let j = 0; j < genKinds.length; j++) {
      const [k, f] = genKinds[(i + j) % genKinds.length];
      const t0 = performance.now();
      const out = await f();
      const dt = performance.now() - t0;
      genSamples[k].push((out.tokens as number[]).length / (dt / 1000));
    }
  const tps = Object.fromEntries(Object.entries(genSamples).map(([k, v]) => [k, median(v)]));
  const steeredRatio = median(genSamples.cached.map((x, i) => x / genSamples.steered[i]));
  await model.dispose();
  plain.dispose();
  return {
    generation: {
      prompt_tokens: genPrompt.length,
      new_tokens: newTokens,
      tokens_per_second: tps,
      cache_speedup: tps.cached / tps.uncached,
      steered_over_plain_time_ratio: steeredRatio,
    },
    model: spec.what,
    tokens: spec.tokens,
    samples: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.length])),
    median_ms: med,
    python_eager_ms: { plain: py.plain_ms, hooked: py.hooked_ms, threads: py.threads },
    idle_sites_ratio: ratio('idleSites'),
    trace12_ratio: ratio('trace12'),
    per_trace_overhead_us: paired(samples.trace12, samples.plain, (x, y) => x - y) * 1000,
    // 95% intervals of the paired medians (see medianInterval)
    interval95: {
      idle_sites_ratio: ratioInterval('idleSites'),
      trace12_ratio: ratioInterval('trace12'),
      per_trace_overhead_us: pairedInterval(samples.trace12, samples.plain, (x, y) => (x - y) * 1000),
      vs_python_eager_ratio: medianInterval(vsPython),
    },
    // the same, over the same model's forward with its sites idle (what the trace machinery
    // adds beyond the sites' own cost, which idle_sites_ratio reports)
    per_trace_overhead_over_idle_sites_us: paired(samples.trace12, samples.idleSites, (x, y) => x - y) * 1000,
    // as a difference of the two medians (how earlier runs reported it)
    per_trace_overhead_unpaired_us: (med.trace12 - med.plain) * 1000,
    record_us: med.record * 1000,
    vs_python_eager_ratio: median(vsPython),
    ours_plain_over_python_plain: median(vsPythonPlain),
    tokens_per_second: (spec.tokens / med.plain) * 1000,
    peak_rss_kb: peak,
  };
}

async function main() {
  prepare();
  const used = setNumThreads(THREADS);
  const info = runtimeInfo();
  const results: Record<string, unknown> = {};
  results.tiny = await benchModel('tiny');
  if (!QUICK) results.gpt2_124m = await benchModel('gpt2_124m');
  const big = (results.gpt2_124m ?? results.tiny) as Awaited<ReturnType<typeof benchModel>>;
  const tiny = results.tiny as Awaited<ReturnType<typeof benchModel>>;
  const headline = {
    idle_sites_ratio: { value: big.idle_sites_ratio, interval95: big.interval95.idle_sites_ratio, target: '<= 1.01', model: big.model },
    trace12_ratio: { value: big.trace12_ratio, interval95: big.interval95.trace12_ratio, target: '<= 1.03', model: big.model },
    per_trace_overhead_us: { value: tiny.per_trace_overhead_us, interval95: tiny.interval95.per_trace_overhead_us, target: '<= 50', model: tiny.model },
    vs_python_eager_ratio: { value: big.vs_python_eager_ratio, interval95: big.interval95.vs_python_eager_ratio, target: '<= 1.0 (ours / python)', model: big.model },
    vs_python_eager_ratio_tiny: { value: tiny.vs_python_eager_ratio, interval95: tiny.interval95.vs_python_eager_ratio, target: '<= 1.0 (ours / python)', model: tiny.model },
    generation_steered_ratio: { value: big.generation.steered_over_plain_time_ratio, target: '<= 1.05 (steered / plain time per token)', model: big.model },
    generation_tokens_per_second: { cached: big.generation.tokens_per_second.cached, uncached: big.generation.tokens_per_second.uncached, model: big.model },
  };
  const out = {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, memoryGB: Math.round(totalmem() / 2 ** 30), device: 'cpu' },
    libtorch: info.torch,
    threads: { torch: used, python: big.python_eager_ms.threads, blas: 'OpenBLAS (pthread), its own default' },
    command: `BENCH_THREADS=${THREADS} BENCH_ROUNDS=${ROUNDS} npm run bench`,
    ...headline,
    details: results,
  };
  mkdirSync(join(ROOT, 'bench'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results.json'), JSON.stringify(out, null, 2) + '\n');
  writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), markdown(out, results));
  console.log(JSON.stringify(headline, null, 2));
}

function markdown(out: any, results: Record<string, any>): string {
  const f = (x: number, d = 3) => x.toFixed(d);
  const rows = Object.entries(results).map(([k, r]) => `| ${k} | ${r.tokens} | ${f(r.median_ms.plain)} | ${f(r.median_ms.idleSites)} | ${f(r.median_ms.emptyTrace)} | ${f(r.median_ms.trace12)} | ${f(r.python_eager_ms.plain)} | ${f(r.python_eager_ms.hooked)} | ${f(r.record_us, 1)} | ${Math.round(r.tokens_per_second)} | ${Math.round(r.peak_rss_kb.plainKB / 1024)} / ${Math.round(r.peak_rss_kb.traceKB / 1024)} |`);
  const pass = (v: number, t: number) => (v <= t ? 'met' : 'NOT met');
  // the 95% interval of a headline's median, where the run recorded one
  const iv = (h: { interval95?: [number, number] }, d = 3) => (h.interval95 ? `${f(h.interval95[0], d)} - ${f(h.interval95[1], d)}` : '');
  return `# Benchmarks

Measured ${out.date.slice(0, 10)} on ${out.machine.cpu} (${out.machine.cores} cores, ${out.machine.memoryGB} GB), CPU,
libtorch ${out.libtorch}, ${out.threads.torch} torch thread(s) for both torchsight and Python, ${out.threads.blas}.
Command: \`${out.command}\` (the numbers below are this run's; \`bench/results.json\` has every figure).

Our calls interleave one by one (plain forward, sites idle, empty trace, 12-save trace, in an
order that turns every iteration), and each ratio or difference is taken per iteration, between
calls a few milliseconds apart; the headline is the median of those. Python's rounds interleave
with ours (one Python process runs a round whenever ours finish one) and vs-Python is the median
of per-round ratios. So the machine's drift falls on both sides of every figure. Every forward of ours goes through the same path a user's
does: a promise, an AsyncWorker, the TorchScript forward (inlined at load, for \`plain.pt\` too), and
results back as Tensor handles. The 95% interval of a median is a percentile bootstrap of the
per-iteration ratios or differences behind it (of the per-round ratios for vs-Python, so only a few
values); the samples drift with the machine and are not independent, so read it as the size
of the noise, not as a guarantee.

| headline | value | 95% interval of the median | target | |
| --- | --- | --- | --- | --- |
| idle_sites_ratio (sites, no intervention / no sites; ${out.idle_sites_ratio.model}) | ${f(out.idle_sites_ratio.value)} | ${iv(out.idle_sites_ratio)} | <= 1.01 | ${pass(out.idle_sites_ratio.value, 1.01)} |
| trace12_ratio (12 saves + 1 in-place patch / plain forward; same model) | ${f(out.trace12_ratio.value)} | ${iv(out.trace12_ratio)} | <= 1.03 | ${pass(out.trace12_ratio.value, 1.03)} |
| per_trace_overhead_us (tiny model: trace with 12 saves - plain forward) | ${f(out.per_trace_overhead_us.value, 1)} | ${iv(out.per_trace_overhead_us, 1)} | <= 50 | ${pass(out.per_trace_overhead_us.value, 50)} |
| the same, over the tiny model's own forward when no intervention touches it (its graph without sites) | ${f(results.tiny.per_trace_overhead_over_idle_sites_us, 1)} | | | |
| vs_python_eager_ratio (ours / eager PyTorch hooks, same intervention; 124M shape) | ${f(out.vs_python_eager_ratio.value)} | ${iv(out.vs_python_eager_ratio)} | <= 1.0 | ${pass(out.vs_python_eager_ratio.value, 1)} |
| vs_python_eager_ratio on the tiny model | ${f(out.vs_python_eager_ratio_tiny.value)} | ${iv(out.vs_python_eager_ratio_tiny)} | <= 1.0 | ${pass(out.vs_python_eager_ratio_tiny.value, 1)} |
| generation: steered / plain time per token (a vector added at every step; key/value cache) | ${f(out.generation_steered_ratio.value)} | | <= 1.05 | ${pass(out.generation_steered_ratio.value, 1.05)} |

Generation, tokens per second (greedy; median over rounds):

| model | prompt / new tokens | with the cache | without (full recompute) | cache speed-up | steered, with the cache |
| --- | --- | --- | --- | --- | --- |
${Object.entries(results).map(([k, r]) => `| ${k} | ${r.generation.prompt_tokens} / ${r.generation.new_tokens} | ${f(r.generation.tokens_per_second.cached, 1)} | ${f(r.generation.tokens_per_second.uncached, 1)} | x${f(r.generation.cache_speedup, 2)} | ${f(r.generation.tokens_per_second.steered, 1)} |`).join('\n')}

Medians in milliseconds (record = the JS side of a trace alone, in microseconds; peak RSS of a
process doing 20 plain forwards / 20 traces, in MB):

| model | tokens | plain | sites idle | empty trace | trace 12 saves + patch | python eager | python + hooks | record (us) | tokens/s (plain) | peak RSS plain / trace |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Models: tiny = ${results.tiny?.model}; gpt2_124m = ${results.gpt2_124m?.model ?? 'not run (BENCH_QUICK)'}.
"plain" is the same weights traced without hook sites (\`bench/python_bench.py plain\`), run through
the same native entry. Python eager runs the eager \`nn.Module\` (Debian's python3, torch 1.13, the
same OpenBLAS and thread count) under \`torch.inference_mode()\`, with forward hooks that save the 12
block outputs and add the same vector in place at block 6's last position.
${readFileSync(join(ROOT, 'bench', 'notes.md'), 'utf8')}`;
}

// `tsx bench/run.ts --render`: rewrites docs/benchmarks.md from bench/results.json and
// bench/notes.md without measuring (after editing the notes)
if (process.argv.includes('--render')) {
  const out = JSON.parse(readFileSync(join(ROOT, 'bench', 'results.json'), 'utf8'));
  writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), markdown(out, out.details));
} else {
  await main();
}
