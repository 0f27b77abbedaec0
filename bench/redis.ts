// The Redis bench: what the hop through a front, Redis and a worker adds to a request over a
// direct `torchsight serve`, and the throughput of one and two workers under concurrent clients.
// Everything runs here on loopback: a redis-server of its own (free port, no persistence), a
// direct server, a front and workers as child processes (src/cli.ts) on the tiny model; this
// process is the client. On 2 cores two workers share the cores one worker already keeps busy
// under load (with the clients, the front and Redis beside them): expect little gain.
//   npx tsx bench/redis.ts [out.json]   prints the JSON
//   BENCH_REDIS_PAIRS (default 200), BENCH_REDIS_ROUNDS (default 3), BENCH_THREADS (default 1)
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { LanguageModel, setNumThreads } from '../src/index.js';
import { median, medianInterval, seededIds } from './lib/stats.js';
import { timed, trace12On } from './remote.js';

const ROOT = join(import.meta.dirname, '..');
const TINY = join(ROOT, 'models', 'gpt2');

export interface RedisBenchResult {
  redis_hop_ms: number;
  redis_hop_interval: [number, number];
  redis_throughput_1w: number;
  redis_throughput_2w: number;
  details: Record<string, unknown>;
}

interface Child {
  child: ChildProcess;
  line: string;
  stop(): Promise<void>;
}

/** A child process, resolved once a stdout line matches `ready`. */
async function spawnReady(cmd: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}): Promise<Child> {
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => ready.test(l) && resolve(l));
    child.once('exit', (code) => reject(new Error(`${args.slice(0, 4).join(' ')} exited (${code}) before it was ready:\n${stderr}`)));
  });
  const stop = () =>
    new Promise<void>((done) => {
      if (child.exitCode !== null) return done();
      child.once('exit', () => done());
      child.kill('SIGTERM');
    });
  return { child, line, stop };
}

const cli = (...args: string[]) => ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function benchRedis(): Promise<RedisBenchResult> {
  const pairs = Number(process.env.BENCH_REDIS_PAIRS ?? 200);
  const rounds = Number(process.env.BENCH_REDIS_ROUNDS ?? 3);
  const threads = Number(process.env.BENCH_THREADS ?? 1);
  const clients = 16;
  const perClient = 16;
  setNumThreads(threads);
  // the direct server and the workers alike: torch at `threads`, OpenBLAS at 1 (no contention)
  const env = { OPENBLAS_NUM_THREADS: '1' };
  const port = await freePort();
  const redisUrl = `redis://127.0.0.1:${port}`;
  const procs: Child[] = [];
  const start = async (p: Promise<Child>) => {
    const c = await p;
    procs.push(c);
    return c;
  };
  try {
    await start(spawnReady('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], /Ready to accept connections/));
    const direct = await start(spawnReady(process.execPath, cli('serve', TINY, '--port', '0', '--threads', String(threads), '--log-level', 'warn'), /^listening on /, env));
    const front = await start(spawnReady(process.execPath, cli('serve', '--redis', redisUrl, '--port', '0', '--log-level', 'warn'), /^listening on /));
    const worker = (n: number) => start(spawnReady(process.execPath, cli('worker', `${TINY}=gpt2`, '--redis', redisUrl, '--threads', String(threads), '--log-level', 'warn'), /^worker ready/, env)).then(() => n);
    await worker(1);
    const urlOf = (c: Child) => /listening on (\S+)/.exec(c.line)![1];
    const workersLive = async (n: number) => {
      for (let i = 0; i < 200; i++) {
        const r = (await (await fetch(`${urlOf(front)}/v1/models`)).json()) as { models: { workers: number }[] };
        if (r.models[0]?.workers === n) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`bench: ${n} workers never showed in the catalog`);
    };
    await workersLive(1);
    const viaDirect = await LanguageModel.remote(urlOf(direct), 'gpt2', { quiet: true });
    const viaFront = await LanguageModel.remote(urlOf(front), 'gpt2', { quiet: true });
    const { trace12 } = trace12On(viaDirect, seededIds(16, viaDirect.tokenizer.vocabSize - 1, 7));
    for (let i = 0; i < 30; i++) {
      await trace12(viaDirect);
      await trace12(viaFront);
    }
    // the hop: direct and through Redis interleaved call by call, the paired differences' median
    const directMs: number[] = [];
    const frontMs: number[] = [];
    for (let i = 0; i < pairs; i++) {
      const order = i % 2 ? [viaDirect, viaFront] : [viaFront, viaDirect];
      for (const m of order) (m === viaDirect ? directMs : frontMs).push(await timed(() => trace12(m)));
    }
    const diffs = frontMs.map((f, i) => f - directMs[i]);
    await direct.stop();

    // throughput: 16 clients of 16 requests each, through the front, with 1 worker then 2
    const load = async () => {
      const rps: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const t = await timed(() => Promise.all(Array.from({ length: clients }, async () => {
          for (let i = 0; i < perClient; i++) await trace12(viaFront);
        })));
        rps.push(((clients * perClient) / t) * 1000);
      }
      return rps;
    };
    const one = await load();
    await worker(2);
    await workersLive(2);
    for (let i = 0; i < 30; i++) await trace12(viaFront);
    const two = await load();
    return {
      redis_hop_ms: median(diffs),
      redis_hop_interval: medianInterval(diffs),
      redis_throughput_1w: median(one),
      redis_throughput_2w: median(two),
      details: {
        model: 'tiny (models/gpt2: GPT-2 shape, 12 layers, d=64, vocab 512), trace12 on 16 tokens',
        threads,
        openblas_threads: 1,
        pairs,
        rounds,
        clients,
        requests_per_round: clients * perClient,
        direct_trace12_ms: median(directMs),
        front_trace12_ms: median(frontMs),
        rps_1w: one,
        rps_2w: two,
        two_over_one: median(two) / median(one),
      },
    };
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
}

// `npx tsx bench/redis.ts [out.json]`: prints the figures, and writes them to out.json when given
// (bench/run.ts runs it so, in a child process, as bench/remote.ts)
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = await benchRedis();
  console.log(JSON.stringify(out, null, 2));
  if (process.argv[2]) writeFileSync(process.argv[2], JSON.stringify(out, null, 2) + '\n');
}
