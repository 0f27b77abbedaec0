// Helpers of the scale-out tests: a redis-server of their own on a free loopback port (or the one
// .ci/run started, TORCHSIGHT_TEST_REDIS, under a prefix of their own), fronts and workers as
// separate `torchsight` processes, and bounded waits. Nothing here talks to anything but loopback.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { MODELS } from './helpers.js';
import { spawnCli } from './serve-helpers.js';

/** Debian's, which `npm run setup` installs */
export const REDIS_SERVER = 'redis-server';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a truthy value, for `ms` at most. */
export async function until<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, ms = 30_000, every = 100): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(every);
  }
}

/** A redis-server of the test's own: no persistence, loopback only; stop() and start() again on the same port. */
export class RedisProcess {
  child?: ChildProcess;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(REDIS_SERVER, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${out}`)), 15_000);
      child.stdout!.on('data', (d) => {
        out += d;
        if (/Ready to accept connections/.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${out}`));
      });
    });
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}

/** The test Redis: .ci/run's when it exported one, else a redis-server of this file's own. */
export async function testRedis(): Promise<{ url: string; prefix: string; stop: () => Promise<void> }> {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const shared = process.env.TORCHSIGHT_TEST_REDIS;
  if (shared) {
    if (!/^redis:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(shared)) throw new Error(`TORCHSIGHT_TEST_REDIS must be a loopback redis:// URL, got ${shared}`);
    return { url: shared, prefix, stop: async () => undefined };
  }
  const r = new RedisProcess(await freePort());
  await r.start();
  return { url: r.url, prefix, stop: () => r.stop() };
}

export type Proc = Awaited<ReturnType<typeof spawnCli>>;

/** A front on a free port. */
export function spawnFront(redis: string, prefix: string, extra: string[] = []): Promise<Proc> {
  return spawnCli('serve', ['--redis', redis, '--redis-prefix', prefix, '--port', '0', '--log-level', 'warn', ...extra], /listening on (\S+)/);
}

/** A worker of gpt2 (and more models), with short locks and heartbeats so that a death shows in a second or two. */
export function spawnWorker(redis: string, prefix: string, models: string[] = [`${MODELS.gpt2}=gpt2`], extra: string[] = []): Promise<Proc> {
  return spawnCli('worker', [...models, '--redis', redis, '--redis-prefix', prefix, '--lock-ms', '1500', '--heartbeat-ms', '300', '--metrics-port', '0', '--log-level', 'warn', ...extra], /worker ready: .*metrics on (\S+)\)/);
}

/** Stops a process: SIGTERM, then SIGKILL after `ms`. */
export async function stop(p: Proc | undefined, ms = 15_000): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  await Promise.race([p.exited, sleep(ms)]);
  if (p.child.exitCode === null && p.child.signalCode === null) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

export async function kill(p: Proc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}
