// docs/benchmarks.md from a results object (bench/results.json): the method, this run's tables,
// and the short summary of what the profiles showed (bench/profiles.md). The diary of every
// session's measurements stays in bench/notes.md, linked, not copied.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const f = (x: number, d = 3) => x.toFixed(d);
const pass = (v: number, t: number) => (v <= t ? 'met' : 'NOT met');
// the 95% interval of a headline's median, where the run recorded one
const iv = (h: { interval95?: [number, number] }, d = 3) => (h.interval95 ? `${f(h.interval95[0], d)} - ${f(h.interval95[1], d)}` : '');
const row = (label: string, h: any, target: number, d = 3) => `| ${label} | ${f(h.value, d)} | ${iv(h, d)} | <= ${target} | ${pass(h.value, target)} |`;

// the torch 2.x part's targets: generation for both shapes; nnsight's trace by shape
const HF_TARGETS: Record<string, { label: string; generate: number; trace: number }> = {
  gpt2_124m: { label: '124M shape', generate: 0.8, trace: 1.0 },
  tiny: { label: 'tiny shape', generate: 0.8, trace: 0.5 },
};

function headRows(hf: Record<string, any>): string[] {
  return Object.entries(HF_TARGETS)
    .filter(([k]) => hf[k])
    .flatMap(([k, t]) => {
      const r = hf[k];
      const h = (key: string) => ({ value: r[key], interval95: r.interval95[key] });
      return [
        row(`vs_hf_generate_ratio (ours / transformers generate, time per token; ${t.label})`, h('vs_hf_generate_ratio'), t.generate),
        row(`vs_nnsight_trace_ratio (ours / nnsight trace, 12 saves + patch; ${t.label})`, h('vs_nnsight_trace_ratio'), t.trace),
      ];
    });
}

/** The torch 2.x part: ours against transformers and nnsight on the same weights. */
function againstPython(out: any): string {
  const hf = out.details?.hf;
  if (!hf) return '';
  const r = Object.values(hf)[0] as any;
  const rows = Object.entries(hf).map(
    ([k, x]: [string, any]) =>
      `| ${k} | ${x.tokens} | ${f(x.median_ms.forward)} | ${f(x.median_ms.hfForward)} | ${f(x.median_ms.trace12)} | ${f(x.median_ms.nnsight)} | ${x.generation.prompt_tokens} / ${x.generation.new_tokens} | ${f(x.ms_per_token.ours)} | ${f(x.ms_per_token.transformers)} | ${x.median_ms.floorStep === undefined ? '' : f(x.median_ms.floorStep)} | ${x.hf_generate_floor_ratio === undefined ? '' : f(x.hf_generate_floor_ratio)} | ${f(x.vs_hf_forward_ratio)} | ${x.checked.greedy_tokens_equal} equal; ${x.checked.saves_max_abs_diff.toExponential(1)} |`,
  );
  return `
### Against transformers and nnsight (torch ${out.torch2.libtorch})

The same weights on both sides: a transformers \`GPT2LMHeadModel\` made from a seeded config
(\`bench/hf_bench.py make\`), saved with \`save_pretrained\` and exported with our CLI, run by the
addon built on the .venv's libtorch ${out.torch2.libtorch} (in a child process: one process loads one
libtorch). Python: torch ${r.python.versions.torch}, transformers ${r.python.versions.transformers}
(its default attention, \`${r.python.attn_implementation}\`; the export traced the eager kernel),
nnsight ${r.python.versions.nnsight}, ${r.python.threads} torch thread(s) like ours. Before timing, the bench
checks that greedy generation gives the same tokens on both sides and that nnsight's 12 saves
equal ours (max abs difference in the last column). The trace is the same on both sides: the 12
block outputs saved and the same vector added in place at block 6's last position (nnsight:
\`out[:, -1].add_(patch)\` and \`out.save()\` in a \`model.trace\`). Our forward is a trace that
returns the logits; transformers' is \`model(input_ids, attention_mask).logits\`; generation is
greedy with the cache on both sides (transformers: \`generate(do_sample=False)\` with its
default cache), time per token counting the prefill. Rounds alternate between the processes;
each ratio is the median of per-round ratios.

The floor: transformers' prefill, then for every later token nothing but that token's weight
matmuls (each block's four Conv1D \`addmm\` with bias, and the tied head), timed in the same
Python on the same tensors. No runtime on these kernels generates faster, so its ratio to
transformers' generate bounds \`vs_hf_generate_ratio\` from below on the machine that ran it: on a
CPU, one token streams every weight from memory once, and that is most of either side's step.

| headline | value | 95% interval of the median | target | |
| --- | --- | --- | --- | --- |
${headRows(hf).join('\n')}

Medians in milliseconds:

| model | tokens | ours forward | transformers forward | ours trace 12 saves + patch | nnsight trace | prompt / new tokens | ours ms/token | transformers ms/token | floor: one step's matmuls | floor ratio | forward ratio | checked: tokens; saves |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}
`;
}

/** The remote part again on Debian's libtorch 1.13, where the run had both. */
function remoteTorch1(out: any): string {
  const t = out.details?.remote_torch1;
  if (!t) return '';
  return `
The same part on Debian's libtorch ${t.details?.libtorch ?? '1.13'}: remote_overhead_ms ${f(t.remote_overhead_ms, 2)}, remote_batching_speedup
${f(t.remote_batching_speedup, 2)} (serial ${f(t.rps_serial, 1)}, 16 concurrent ${f(t.rps_concurrent, 1)} requests per second; forward bound
x${f(t.details?.local_forward_bound_speedup ?? NaN, 2)}, 16 rows x${f(t.details?.local_rows_cost_ratio ?? NaN, 1)} one row). The headline runs on torch 2.x,
the libtorch a server is built on (CUDA builds are). Debian's OpenBLAS 0.3.21 does not recognise this
CPU and runs its generic Prescott (SSE3) kernels (\`OPENBLAS_VERBOSE=2\` says so), which makes a
batch of 16 rows cost x${f(t.details?.local_rows_cost_ratio ?? NaN, 1)} one row there.
`;
}

/** The remote part: a trace over loopback against `torchsight serve`, and cross-request batching. */
function remote(out: any): string {
  const r = out.details?.remote;
  if (!r || !out.remote_overhead_ms) return '';
  const sp = out.remote_batching_speedup;
  return `
### Remote execution (tiny model, \`torchsight serve\` on loopback)

\`bench/remote.ts\`: the 12-save trace sent to a server in a child process, interleaved call by call
with the same trace run locally (the difference's median); then rounds of 16 concurrent clients
alternating with serial requests (the batching server runs with \`OPENBLAS_NUM_THREADS=${r.details?.batching_server_openblas_threads ?? 1}\`,
since on 2 cores OpenBLAS's second thread took the batching gain on libtorch 1.13). Client and server share the
machine's ${out.machine.cores} cores.

| headline | value | 95% interval of the median | target | |
| --- | --- | --- | --- | --- |
${row('remote_overhead_ms (loopback trace12 - local trace12)', out.remote_overhead_ms, 2)}
| remote_batching_speedup (16 concurrent clients / serial) | ${f(sp.value, 2)} | ${iv(sp, 2)} | >= 3 | ${sp.value >= 3 ? 'met' : 'NOT met'} |

Client and server run on libtorch ${r.details?.libtorch ?? out.libtorch}. Requests per second: serial ${f(r.rps_serial, 1)}, 16 concurrent ${f(r.rps_concurrent, 1)}. The forward itself bounds the
gain: 16 requests alone over one forward with 16 invokes is x${f(r.details?.local_forward_bound_speedup ?? NaN, 2)} locally, and 16 rows
cost x${f(r.details?.local_rows_cost_ratio ?? NaN, 1)} one row on this model.
${remoteTorch1(out)}`;
}

/** The Redis part: the hop through a front, Redis and a worker, and one and two workers' throughput. */
function redis(out: any): string {
  const r = out.details?.redis;
  if (!r || !out.redis_hop_ms) return '';
  return `
### Serving over Redis (tiny model, a front and workers on loopback)

\`bench/redis.ts\`: the same 12-save trace sent to \`torchsight serve --redis\` (a front) and a
\`torchsight worker\`, interleaved call by call with a direct \`torchsight serve\` (the difference's
median); then 16 concurrent clients through the front with one worker, and with two. Redis, the
front, the workers and the clients share the machine's ${out.machine.cores} cores: two workers on cores one
worker already keeps busy gain little (x${f(r.details?.two_over_one ?? NaN, 2)}); a worker per GPU is what scales.

| headline | value | 95% interval of the median | target | |
| --- | --- | --- | --- | --- |
${row('redis_hop_ms (through Redis - direct serve)', out.redis_hop_ms, 3)}

Requests per second: one worker ${f(r.redis_throughput_1w, 1)}, two workers ${f(r.redis_throughput_2w, 1)}.
`;
}

export function markdown(out: any, root: string): string {
  // the per-model results (the serving parts have their own sections)
  const results = Object.fromEntries(Object.entries(out.details).filter(([k, v]) => k !== 'hf' && (v as any)?.median_ms)) as Record<string, any>;
  const rows = Object.entries(results).map(([k, r]) => `| ${k} | ${r.tokens} | ${f(r.median_ms.plain)} | ${f(r.median_ms.idleSites)} | ${f(r.median_ms.emptyTrace)} | ${f(r.median_ms.trace12)} | ${f(r.python_eager_ms.plain)} | ${f(r.python_eager_ms.hooked)} | ${f(r.record_us, 1)} | ${Math.round(r.tokens_per_second)} | ${Math.round(r.peak_rss_kb.plainKB / 1024)} / ${Math.round(r.peak_rss_kb.traceKB / 1024)} |`);
  return `# Benchmarks

Measured ${out.date.slice(0, 10)} on ${out.machine.cpu} (${out.machine.cores} cores, ${out.machine.memoryGB} GB), CPU,
libtorch ${out.libtorch}, ${out.threads.torch} torch thread(s) for both torchsight and Python, ${out.threads.blas}.
Load average (1, 5, 15 min) at the start ${(out.machine.load_average?.start ?? []).map((x: number) => f(x, 2)).join(', ') || 'not recorded'}, at the end ${(out.machine.load_average?.end ?? []).map((x: number) => f(x, 2)).join(', ') || 'not recorded'}.
Command: \`${out.command}\` (the numbers below are this run's; \`bench/results.json\` has every figure).

Our calls interleave one by one (plain forward, sites idle, empty trace, 12-save trace and its scan, in an
order that turns every iteration), and each ratio or difference is taken per iteration, between
calls a few milliseconds apart; the headline is the median of those. Python's rounds interleave
with ours (one Python process runs a round whenever ours finish one) and vs-Python is the median
of per-round ratios. So the machine's drift falls on both sides of every figure. Every forward of
ours goes through the same path a user's does: a promise, an AsyncWorker, the TorchScript forward
(inlined at load, for \`plain.pt\` too), and results back as Tensor handles. The 95% interval of a
median is a percentile bootstrap of the per-iteration ratios or differences behind it (of the
per-round ratios for vs-Python, so only a few values); the samples drift with the machine and are
not independent, so read it as the size of the noise, not as a guarantee.

| headline | value | 95% interval of the median | target | |
| --- | --- | --- | --- | --- |
${row(`idle_sites_ratio (sites, no intervention / no sites; ${out.idle_sites_ratio.model})`, out.idle_sites_ratio, 1.01)}
${row('trace12_ratio (12 saves + 1 in-place patch / plain forward; same model)', out.trace12_ratio, 1.03)}
${out.scan_over_forward ? row('scan_over_forward (model.scan of the 12-save trace / plain forward; same model)', out.scan_over_forward, 0.1) : '| scan_over_forward (model.scan / plain forward) | not measured in this run | | <= 0.1 | |'}
${row('per_trace_overhead_us (tiny model: trace with 12 saves - plain forward)', out.per_trace_overhead_us, 20, 1)}
| the same, over the tiny model's own forward when no intervention touches it (its graph without sites) | ${f(results.tiny.per_trace_overhead_over_idle_sites_us, 1)} | | | |
${row('vs_python_eager_ratio (ours / eager PyTorch hooks, same intervention; 124M shape)', out.vs_python_eager_ratio, 1.0)}
${row('vs_python_eager_ratio on the tiny model', out.vs_python_eager_ratio_tiny, 1.0)}
${row('generation: steered / plain time per token (a vector added at every step; key/value cache)', out.generation_steered_ratio, 1.05)}

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
${againstPython(out)}${remote(out)}${redis(out)}
${readFileSync(join(root, 'bench', 'profiles.md'), 'utf8')}`;
}
