// The remote bench: what a request to `torchsight serve` over loopback costs on top of the same
// trace run locally, and what cross-request batching buys under concurrent load. The server runs
// in a child process (src/cli.ts serve) on the tiny model; this process is the client.
//   npx tsx bench/remote.ts            prints the JSON
//   BENCH_REMOTE_PAIRS (default 300), BENCH_REMOTE_ROUNDS (default 5), BENCH_THREADS (default 1)
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { LanguageModel, Tensor, runtimeInfo, setNumThreads } from '../src/index.js';
import { median, medianInterval, seededIds } from './lib/stats.js';

const ROOT = join(import.meta.dirname, '..');
const TINY = join(ROOT, 'models', 'gpt2');

export interface RemoteBenchOptions {
  /** local/remote trace pairs for the overhead (default 300) */
  pairs?: number;
  /** serial/concurrent rounds for the batching speedup (default 5) */
  rounds?: number;
  /** requests per client per concurrent round, and serial requests per round (default 16) */
  perClient?: number;
  /** concurrent clients (default 16) */
  clients?: number;
  /** torch intra-op threads, here and in the server (default 1, as bench/run.ts) */
  threads?: number;
  /** the server's --batch-window-ms (default: the server's default) */
  batchWindowMs?: number;
  /** tokens per trace (default 16, as bench/run.ts's tiny model) */
  tokens?: number;
  /**
   * OPENBLAS_NUM_THREADS of the server the batching rounds run on (default 1). On 2 cores a
   * server under concurrent load spends its batching gain on OpenBLAS's threads contending with
   * the forward, the JS thread and the clients: measured here, server CPU per request 5.0 ms
   * batched with BLAS at 2 threads against 2.3 ms with 1 (4.6 and 5.3 ms serial).
   */
  batchingBlasThreads?: number;
}

export interface RemoteBenchResult {
  remote_overhead_ms: number;
  remote_overhead_interval: [number, number];
  remote_batching_speedup: number;
  rps_serial: number;
  rps_concurrent: number;
  details: Record<string, unknown>;
}

interface Server {
  url: string;
  child: ChildProcess;
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

/** Starts `torchsight serve` on the tiny model, port 0, in a child process. */
async function startServer(threads: number, batchWindowMs?: number, env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const args = ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), 'serve', TINY, '--port', '0', '--device', 'cpu', '--log-level', 'warn'];
  // the server's torch threads as the local side's, so the difference is the remote path alone
  args.push('--threads', String(threads));
  if (batchWindowMs !== undefined) args.push('--batch-window-ms', String(batchWindowMs));
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (l) => {
      const m = /^listening on (\S+)/.exec(l);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`the server exited (${code}) before listening:\n${stderr}`)));
  });
  return {
    url,
    child,
    metrics: async () => (await fetch(`${url}/metrics`)).text(),
    stop: () =>
      new Promise<void>((done) => {
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
}

/** The batch size histogram of the server's metrics: requests per forward, as counts of forwards. */
function batchSizes(metrics: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of metrics.matchAll(/^\w*batch_size_bucket\{[^}]*le="([^"]+)"[^}]*\} (\d+)/gm)) out[m[1]] = Number(m[2]);
  const sum = /^\w*batch_size_sum\{[^}]*\} ([\d.e+]+)/m.exec(metrics);
  const count = /^\w*batch_size_count\{[^}]*\} (\d+)/m.exec(metrics);
  if (sum && count) out.mean = Number(sum[1]) / Math.max(1, Number(count[1]));
  return out;
}

/** bench/run.ts's trace12 on `ids`: one in-place patch at block 6, the 12 blocks' hidden states saved (and freed). */
export function trace12On(like: LanguageModel, ids: number[]) {
  const d = Number((like.config as { n_embd: number }).n_embd);
  const patch = Tensor.from(Array.from({ length: d }, (_, i) => Math.cos(i) * 0.01));
  const intervention = (m: any) => {
    m.transformer.h[6].output[0].index(':, -1').add_(patch);
    return m.transformer.h.map((b: any) => b.output[0]);
  };
  const trace12 = async (model: LanguageModel) => {
    const acts = await model.trace(ids, intervention);
    acts.forEach((a: Tensor) => a.dispose());
  };
  return { intervention, trace12 };
}

/** Milliseconds `f` takes. */
export async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

export async function benchRemote(opts: RemoteBenchOptions = {}): Promise<RemoteBenchResult> {
  const pairs = opts.pairs ?? Number(process.env.BENCH_REMOTE_PAIRS ?? 300);
  const rounds = opts.rounds ?? Number(process.env.BENCH_REMOTE_ROUNDS ?? 5);
  const perClient = opts.perClient ?? 16;
  const clients = opts.clients ?? 16;
  const threads = opts.threads ?? Number(process.env.BENCH_THREADS ?? 1);
  const tokens = opts.tokens ?? 16;
  setNumThreads(threads);
  const blas = opts.batchingBlasThreads ?? 1;
  // the overhead's server: as the local side (OpenBLAS at its default) so the forward costs alike
  let server = await startServer(threads, opts.batchWindowMs);
  const local = await LanguageModel.load(TINY, { device: 'cpu' });
  try {
    let remote = await LanguageModel.remote(server.url, 'gpt2', { quiet: true });
    const ids = seededIds(tokens, local.tokenizer.vocabSize - 1, 7);
    const { intervention, trace12 } = trace12On(local, ids);
    for (let i = 0; i < 20; i++) {
      await trace12(local);
      await trace12(remote);
    }

    // overhead: local and remote interleaved call by call, the paired differences' median
    const localMs: number[] = [];
    const remoteMs: number[] = [];
    for (let i = 0; i < pairs; i++) {
      // alternate which goes first, so a drift within a pair cancels too
      if (i % 2) {
        localMs.push(await timed(() => trace12(local)));
        remoteMs.push(await timed(() => trace12(remote)));
      } else {
        remoteMs.push(await timed(() => trace12(remote)));
        localMs.push(await timed(() => trace12(local)));
      }
    }
    const diffs = remoteMs.map((r, i) => r - localMs[i]);

    const n = perClient * clients;
    // serial throughput on this server too, for reference
    const t1 = await timed(async () => {
      for (let i = 0; i < n; i++) await trace12(remote);
    });
    const rpsSerialBlasDefault = (n / t1) * 1000;

    // batching, on a server with OpenBLAS at `blas` threads: serial remote throughput, then 16
    // clients at once, in alternating rounds
    await server.stop();
    server = await startServer(threads, opts.batchWindowMs, { OPENBLAS_NUM_THREADS: String(blas) });
    remote = await LanguageModel.remote(server.url, 'gpt2', { quiet: true });
    for (let i = 0; i < 20; i++) await trace12(remote);
    // and one untimed concurrent round: the serial path was warm, the batched one was not (its
    // first round ran at about two thirds of the later ones' throughput: code not yet optimized,
    // the merged graph's sites not yet seen)
    await Promise.all(Array.from({ length: clients }, async () => {
      for (let i = 0; i < perClient; i++) await trace12(remote);
    }));
    const serialRps: number[] = [];
    const concurrentRps: number[] = [];
    const before = batchSizes(await server.metrics());
    for (let r = 0; r < rounds; r++) {
      let t = await timed(async () => {
        for (let i = 0; i < n; i++) await trace12(remote);
      });
      serialRps.push((n / t) * 1000);
      // each client a model of its own (its own connection pool is the process's; a client is a
      // sequence of requests, as 16 users each waiting on their own trace)
      t = await timed(() =>
        Promise.all(
          Array.from({ length: clients }, async () => {
            for (let i = 0; i < perClient; i++) await trace12(remote);
          }),
        ),
      );
      concurrentRps.push((n / t) * 1000);
    }
    const after = batchSizes(await server.metrics());

    // why batching gives what it gives: the server runs a batch of k requests as one forward with
    // k invokes (batch.ts). The same forward here, locally, against k forwards of one request,
    // bounds the speedup batching can give on this machine, with no HTTP and no client work.
    const mergedTrace = (k: number) => async () => {
      const outs = (await local.trace((t: any) => Array.from({ length: k }, () => t.invoke(ids, intervention)))) as Tensor[][];
      outs.flat().forEach((a) => a.dispose());
    };
    const rowsOnly = (k: number) => () => local.trace(Array.from({ length: k }, () => ids) as any, () => undefined);
    const fwd = { alone: [] as number[], merged: [] as number[], row1: [] as number[], rows: [] as number[] };
    for (let i = 0; i < 3; i++) await mergedTrace(clients)();
    for (let i = 0; i < Math.max(10, Math.round(pairs / 10)); i++) {
      fwd.alone.push(await timed(() => trace12(local)));
      fwd.merged.push(await timed(mergedTrace(clients)));
      fwd.row1.push(await timed(rowsOnly(1)));
      fwd.rows.push(await timed(rowsOnly(clients)));
    }
    const forwardBound = median(fwd.merged.map((m, i) => (clients * fwd.alone[i]) / m));
    const speedups = concurrentRps.map((c, i) => c / serialRps[i]);
    return {
      remote_overhead_ms: median(diffs),
      remote_overhead_interval: medianInterval(diffs),
      remote_batching_speedup: median(speedups),
      rps_serial: median(serialRps),
      rps_concurrent: median(concurrentRps),
      details: {
        model: 'tiny (models/gpt2: GPT-2 shape, 12 layers, d=64, vocab 512)',
        // client and server alike (one process loads one libtorch; TORCHSIGHT_ADDON picks it)
        libtorch: runtimeInfo().torch,
        tokens,
        threads,
        pairs,
        rounds,
        clients,
        requests_per_round: n,
        batching_server_openblas_threads: blas,
        rps_serial_openblas_default: rpsSerialBlasDefault,
        local_trace12_ms: median(localMs),
        remote_trace12_ms: median(remoteMs),
        speedup_interval: medianInterval(speedups),
        // the ceiling the forward itself sets: k requests alone over one forward with k invokes
        local_forward_bound_speedup: forwardBound,
        local_trace12_alone_ms: median(fwd.alone),
        local_trace12_merged_ms: median(fwd.merged),
        // the model's own cost of rows (no interventions): k rows over 1 row
        local_rows_cost_ratio: median(fwd.rows.map((r, i) => r / fwd.row1[i])),
        speedups,
        // forwards by requests merged into them (cumulative le buckets), before and after the rounds
        batch_size_histogram_before: before,
        batch_size_histogram_after: after,
      },
    };
  } finally {
    await local.dispose();
    await server.stop();
  }
}

// `npx tsx bench/remote.ts [out.json]`: prints the figures, and writes them to out.json when given
// (bench/run.ts runs it so, in a child process: it imports src/, run.ts dist/)
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = await benchRemote();
  console.log(JSON.stringify(out, null, 2));
  if (process.argv[2]) writeFileSync(process.argv[2], JSON.stringify(out, null, 2) + '\n');
}
