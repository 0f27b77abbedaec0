// npm run bench: torchsight's costs as ratios measured in one run, so a noisy machine cancels
// out. Writes bench/results.json and docs/benchmarks.md (a full run only; partial runs print).
//   BENCH_THREADS (default 1), BENCH_ROUNDS (default 7), BENCH_QUICK=1 (tiny model only),
//   BENCH_ONLY=torch1|hf (one part only), BENCH_TORCH2_ADDON (default build-torch2/Release/torchsight.node)
// Two parts, one libtorch each: this process (the default addon; the example models, Debian's
// torch 1.13 for Python's eager hooks), then bench/hf.ts in a child process on the addon built
// against the .venv's torch 2.x (transformers and nnsight on the same weights as ours).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LanguageModel, Tensor, setNumThreads, runtimeInfo } from '../dist/index.js';
import { native, type NativeModel, type WireTrace } from '../dist/native.js';
import { makeBatch } from '../dist/inputs.js';
import { PackWriter } from '../dist/trace/wire.js';
import { Graph } from '../dist/trace/graph.js';
import { markdown } from './lib/render.js';
import { interleaved, lineServer, median, medianInterval, seededIds, time } from './lib/stats.js';
// the packed form of a graph with no nodes
const emptyGraph = () => new PackWriter().finish(0);

const ROOT = join(import.meta.dirname, '..');
const PY = process.env.TORCHSIGHT_PYTHON ?? '/usr/bin/python3';
// torch intra-op threads; OpenBLAS keeps its default (all cores). On the 2-core machine here
// torch=1 with BLAS=2 was fastest (124M: 61 ms vs 66 ms with torch=2; tiny: 0.99 vs 1.36 ms).
const THREADS = Number(process.env.BENCH_THREADS ?? 1);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const QUICK = !!process.env.BENCH_QUICK;
const ONLY = process.env.BENCH_ONLY;
const TORCH2_ADDON = process.env.BENCH_TORCH2_ADDON ?? join(ROOT, 'build-torch2', 'Release', 'torchsight.node');

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
  const server = lineServer(child, 'bench/python_bench.py serve');
  return { ready: server.ready, round: (iters: number) => server.ask<{ plain: number[]; hooked: number[]; threads: number }>(String(iters)), close: server.close };
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
    // the same intervention for shapes and dtypes only (model.scan: meta tensors, no weights run)
    scan12: () => model.scan(ids, intervention),
  };
  // recording alone (JS side of a trace): no forward
  const recordOnly = async () => {
    const g = new Graph(model.padId);
    model.recordTrace(g, ids, intervention);
    g.request(model.native);
  };
  const samples: Record<string, number[]> = { plain: [], idleSites: [], emptyTrace: [], trace12: [], scan12: [], record: [], pyPlain: [], pyHooked: [] };
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
    await interleaved(fns, iters, samples);
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
    scan_over_forward: ratio('scan12'),
    per_trace_overhead_us: paired(samples.trace12, samples.plain, (x, y) => x - y) * 1000,
    // 95% intervals of the paired medians (see medianInterval)
    interval95: {
      idle_sites_ratio: ratioInterval('idleSites'),
      trace12_ratio: ratioInterval('trace12'),
      scan_over_forward: ratioInterval('scan12'),
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

type Torch1Result = Awaited<ReturnType<typeof benchModel>>;

/** bench/hf.ts in a child process whose addon is built on the .venv's torch 2.x; its results. */
function torch2Part(): { libtorch: string; threads: number; details: Record<string, any> } {
  if (!existsSync(TORCH2_ADDON))
    throw new Error(`bench: the torch 2.x part (transformers and nnsight) needs the addon built on the .venv's libtorch: ${TORCH2_ADDON} is missing (npm run build:native:torch2, or BENCH_TORCH2_ADDON=<torchsight.node>; BENCH_ONLY=torch1 skips the part)`);
  const file = join(ROOT, '.cache', 'bench-torch2.json');
  mkdirSync(join(ROOT, '.cache'), { recursive: true });
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/hf.ts', file], { cwd: ROOT, stdio: 'inherit', env: { ...process.env, TORCHSIGHT_ADDON: TORCH2_ADDON } });
  if (r.status !== 0) throw new Error(`bench: the torch 2.x part (bench/hf.ts) exited ${r.status ?? r.signal}`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

/**
 * bench/<part>.ts in a child process: remote (a trace over loopback against `torchsight serve`,
 * and batching) or redis (the hop through a front, Redis and a worker; one and two workers).
 */
function servingPart(part: 'remote' | 'redis', addon?: string): Record<string, any> {
  const file = join(ROOT, '.cache', `bench-${part}${addon ? '-torch2' : ''}.json`);
  mkdirSync(join(ROOT, '.cache'), { recursive: true });
  const env = addon ? { ...process.env, TORCHSIGHT_ADDON: addon } : process.env;
  const r = spawnSync(process.execPath, ['--import', 'tsx', `bench/${part}.ts`, file], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env });
  if (r.status !== 0) throw new Error(`bench: the ${part} part (bench/${part}.ts) exited ${r.status ?? r.signal}`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** The headline figures: each from the 124M shape where the run had it, with the tiny one beside. */
function headlines(results: Record<string, any>) {
  const h: Record<string, unknown> = {};
  const tiny = results.tiny as Torch1Result | undefined;
  const big = (results.gpt2_124m ?? tiny) as Torch1Result | undefined;
  if (tiny && big) {
    Object.assign(h, {
      idle_sites_ratio: { value: big.idle_sites_ratio, interval95: big.interval95.idle_sites_ratio, target: '<= 1.01', model: big.model },
      trace12_ratio: { value: big.trace12_ratio, interval95: big.interval95.trace12_ratio, target: '<= 1.03', model: big.model },
      scan_over_forward: { value: big.scan_over_forward, interval95: big.interval95.scan_over_forward, target: '<= 0.1 (model.scan / plain forward)', model: big.model },
      per_trace_overhead_us: { value: tiny.per_trace_overhead_us, interval95: tiny.interval95.per_trace_overhead_us, target: '<= 20', model: tiny.model },
      vs_python_eager_ratio: { value: big.vs_python_eager_ratio, interval95: big.interval95.vs_python_eager_ratio, target: '<= 1.0 (ours / python)', model: big.model },
      vs_python_eager_ratio_tiny: { value: tiny.vs_python_eager_ratio, interval95: tiny.interval95.vs_python_eager_ratio, target: '<= 1.0 (ours / python)', model: tiny.model },
      generation_steered_ratio: { value: big.generation.steered_over_plain_time_ratio, target: '<= 1.05 (steered / plain time per token)', model: big.model },
      generation_tokens_per_second: { cached: big.generation.tokens_per_second.cached, uncached: big.generation.tokens_per_second.uncached, model: big.model },
    });
  }
  const hf = results.hf as Record<string, any> | undefined;
  if (hf) {
    const entry = (r: any, key: string, target: string) => ({ value: r[key], interval95: r.interval95[key], target, model: r.model });
    const gen = '<= 0.8 (ours / transformers generate, time per token)';
    // the floor: the ratio a runtime doing nothing but each token's weight matmuls would reach
    const withFloor = (r: any) => ({ ...entry(r, 'vs_hf_generate_ratio', gen), floor: r.hf_generate_floor_ratio, floor_interval95: r.interval95.hf_generate_floor_ratio });
    if (hf.gpt2_124m) Object.assign(h, { vs_hf_generate_ratio: withFloor(hf.gpt2_124m), vs_nnsight_trace_ratio: entry(hf.gpt2_124m, 'vs_nnsight_trace_ratio', '<= 1.0 (ours / nnsight trace)') });
    if (hf.tiny) Object.assign(h, { vs_hf_generate_ratio_tiny: withFloor(hf.tiny), vs_nnsight_trace_ratio_tiny: entry(hf.tiny, 'vs_nnsight_trace_ratio', '<= 0.5 (ours / nnsight trace)') });
  }
  const remote = results.remote as Record<string, any> | undefined;
  if (remote)
    Object.assign(h, {
      remote_overhead_ms: { value: remote.remote_overhead_ms, interval95: remote.remote_overhead_interval, target: '<= 2 (loopback trace12 - local trace12, tiny model)' },
      remote_batching_speedup: { value: remote.remote_batching_speedup, interval95: remote.details?.speedup_interval, target: '>= 3 (16 concurrent clients / serial, requests per second)', rps_serial: remote.rps_serial, rps_concurrent: remote.rps_concurrent },
    });
  const redis = results.redis as Record<string, any> | undefined;
  if (redis)
    Object.assign(h, {
      redis_hop_ms: { value: redis.redis_hop_ms, interval95: redis.redis_hop_interval, target: '<= 3 (trace12 through front + Redis + worker - direct serve, tiny model)' },
      redis_throughput_1w: { value: redis.redis_throughput_1w, target: 'requests per second, 16 clients through a front, 1 worker' },
      redis_throughput_2w: { value: redis.redis_throughput_2w, target: 'the same with 2 workers (on 2 cores: little gain, the cores are already busy)' },
    });
  return h;
}

async function main() {
  const load = loadavg();
  const results: Record<string, any> = {};
  let used = THREADS;
  let torch = '';
  if (ONLY !== 'hf') {
    prepare();
    used = setNumThreads(THREADS);
    torch = runtimeInfo().torch;
    results.tiny = await benchModel('tiny');
    if (!QUICK) results.gpt2_124m = await benchModel('gpt2_124m');
  }
  const torch2 = ONLY === 'torch1' ? undefined : torch2Part();
  if (torch2) results.hf = torch2.details;
  // the remote headline on the libtorch a server is built on (torch 2.x: CUDA builds are), client
  // and server alike; the same part on Debian's 1.13 beside it (its OpenBLAS 0.3.21 does not know
  // this CPU and runs its generic SSE3 kernels, so every batched matmul is slower than it should be)
  if (!ONLY && !QUICK) {
    const torch2Addon = existsSync(TORCH2_ADDON) ? TORCH2_ADDON : undefined;
    results.remote = servingPart('remote', torch2Addon);
    if (torch2Addon) results.remote_torch1 = servingPart('remote');
  }
  if (!ONLY && !QUICK) results.redis = servingPart('redis');
  const headline = headlines(results);
  const out = {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, memoryGB: Math.round(totalmem() / 2 ** 30), device: 'cpu', load_average: { start: load, end: loadavg() } },
    libtorch: torch,
    threads: { torch: used, python: (results.gpt2_124m ?? results.tiny)?.python_eager_ms.threads, blas: 'OpenBLAS (pthread), its own default' },
    ...(torch2 ? { torch2: { libtorch: torch2.libtorch, threads: torch2.threads } } : {}),
    command: `BENCH_THREADS=${THREADS} BENCH_ROUNDS=${ROUNDS} npm run bench`,
    ...headline,
    details: results,
  };
  console.log(JSON.stringify(headline, null, 2));
  if (QUICK || ONLY) {
    // a partial run must not replace the full run's figures: it goes to .cache only
    const file = join(ROOT, '.cache', 'bench-partial.json');
    mkdirSync(join(ROOT, '.cache'), { recursive: true });
    writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
    console.log(`bench: partial run (BENCH_QUICK or BENCH_ONLY): results in ${file}; bench/results.json and docs/benchmarks.md unchanged`);
    return;
  }
  writeFileSync(join(ROOT, 'bench', 'results.json'), JSON.stringify(out, null, 2) + '\n');
  writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), markdown(out, ROOT));
}

// `tsx bench/run.ts --render`: rewrites docs/benchmarks.md from bench/results.json and
// bench/profiles.md without measuring (after editing the summary)
if (process.argv.includes('--render')) {
  const out = JSON.parse(readFileSync(join(ROOT, 'bench', 'results.json'), 'utf8'));
  writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), markdown(out, ROOT));
} else {
  await main();
}
