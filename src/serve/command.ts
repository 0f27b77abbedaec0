// `torchsight serve <dir>[=<name>] ... [options]`: loads the models, serves them, prints
// `listening on http://HOST:PORT` on stdout when ready, and on SIGINT/SIGTERM refuses new
// requests, finishes the running ones and exits. With `--redis URL` and no model folders it is
// a front of workers (scale/front.ts); `torchsight worker` (scale/command.ts) shares the model
// specs and their loading from here.
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { native } from '../native.js';
import { KeyRing } from './keys.js';
import { loadServedModel, type ServedModel } from './runner.js';
import { DEFAULT_LIMITS, isLoopback, startServer, type Limits } from './server.js';

export const SERVE_USAGE = `usage: torchsight serve <model-dir>[=<name>] [more dirs] [options]
       torchsight serve --redis redis://HOST:6379 [options]   a front of workers (torchsight worker)
  --host H               address to listen on (default 127.0.0.1; any other needs --keys)
  --port P               port (default 8080; 0 picks a free one)
  --keys FILE            API keys (torchsight keys add FILE <name>); without it only loopback, no keys
  --device D             cpu | cuda | cuda:N (default: cuda when available)
  --threads N            torch intra-op threads (default: libtorch's, one per core); on few
                         cores under load, OPENBLAS_NUM_THREADS=1 in the environment helps too
  --max-queue N          requests waiting, all models (default ${DEFAULT_LIMITS.maxQueue})
  --max-nodes N          graph nodes per request (default ${DEFAULT_LIMITS.maxNodes})
  --max-request-bytes N  request body (default ${DEFAULT_LIMITS.maxRequestBytes})
  --max-result-bytes N   encoded result (default ${DEFAULT_LIMITS.maxResultBytes})
  --max-tokens N         rows x tokens per request (default ${DEFAULT_LIMITS.maxTokens})
  --max-new-tokens N     per generation (default ${DEFAULT_LIMITS.maxNewTokens})
  --timeout-ms N         running time per request; past it the request is cancelled (default ${DEFAULT_LIMITS.timeoutMs})
  --result-ttl S         seconds a finished job's result is kept (default ${DEFAULT_LIMITS.resultTtlMs / 1000})
  --concurrency N        requests queued or running per key (default ${DEFAULT_LIMITS.concurrency})
  --rate N               requests per minute per key, 0 for none (default ${DEFAULT_LIMITS.ratePerMinute})
  --batch-window-ms N    under load, how long an idle model waits to batch requests (default 2; 0 off)
  --max-batch N          requests per batched forward (default 16)
  --log-level L          pino level: fatal error warn info debug silent (default info)
  --redis URL            with no model folders: a front that queues requests on Redis for workers
  --redis-prefix P       Redis key prefix, the same for a deployment's fronts and workers (default torchsight)
  --worker-grace S       a front takes requests for a model whose last worker left this many
                         seconds ago; they wait for a worker (default 60)`;

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Runs the server until a signal; resolves to the exit code. */
export async function serveCommand(args: string[]): Promise<number> {
  const num = { type: 'string' } as const;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8080' },
      keys: { type: 'string' },
      device: { type: 'string' },
      threads: num,
      'max-queue': num,
      'max-nodes': num,
      'max-request-bytes': num,
      'max-result-bytes': num,
      'max-tokens': num,
      'max-new-tokens': num,
      'timeout-ms': num,
      'result-ttl': num,
      concurrency: num,
      rate: num,
      'batch-window-ms': num,
      'max-batch': num,
      'log-level': { type: 'string', default: 'info' },
      redis: { type: 'string' },
      'redis-prefix': { type: 'string' },
      'worker-grace': num,
    },
  });
  if (values.redis && positionals.length > 0) throw new Error('a front (--redis) holds no models: run them with torchsight worker <dir> --redis URL');
  if (positionals.length === 0 && !values.redis) {
    console.error(SERVE_USAGE);
    return 2;
  }
  const int = intFlags(values);
  const limits: Partial<Limits> = {};
  const set = <K extends keyof Limits>(k: K, v: number | undefined) => v !== undefined && (limits[k] = v);
  set('maxQueue', int('max-queue', 1));
  set('maxNodes', int('max-nodes', 1));
  set('maxRequestBytes', int('max-request-bytes', 1024));
  set('maxResultBytes', int('max-result-bytes', 1024));
  set('maxTokens', int('max-tokens', 1));
  set('maxNewTokens', int('max-new-tokens', 0));
  set('timeoutMs', int('timeout-ms', 1));
  const ttl = int('result-ttl', 0);
  set('resultTtlMs', ttl === undefined ? undefined : ttl * 1000);
  set('concurrency', int('concurrency', 1));
  set('ratePerMinute', int('rate', 0));
  const port = int('port', 0)!;
  const host = values.host!;
  const keys = values.keys ? KeyRing.fromFile(values.keys) : undefined;
  if (!keys && !isLoopback(host)) throw new Error(`refusing to serve on ${host} without keys: pass --keys keys.json (make one with 'torchsight keys add keys.json <name>'), or serve on 127.0.0.1`);

  const threads = int('threads', 1);
  if (threads !== undefined) native().setNumThreads(threads);

  const grace = int('worker-grace', 0);
  const redis = values.redis;
  // loaded only for a front: BullMQ and ioredis stay out of a single-box server
  const front = redis ? await import('../scale/front.js') : undefined;
  const server = await startServer({
    ...(redis && front
      ? { backend: (ctx) => front.frontBackend({ redis: front.checkRedisUrl(redis), prefix: values['redis-prefix'], workerGraceMs: grace === undefined ? undefined : grace * 1000 }, ctx) }
      : { models: await loadModels(positionals, values.device) }),
    host,
    port,
    keys,
    limits,
    batchWindowMs: int('batch-window-ms', 0),
    maxBatch: int('max-batch', 1),
    logLevel: values['log-level'],
    logStream: process.stderr,
  });
  console.log(`listening on ${server.url}`);
  return untilSignal(() => server.close());
}

/** Reads integer flags of parsed `values`: undefined when absent, a clear error when not an integer >= min. */
export function intFlags(values: object): (flag: string, min?: number) => number | undefined {
  return (flag, min = 0) => {
    const v = (values as Record<string, string | undefined>)[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${flag} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
}

/** `<dir>[=<name>]` arguments loaded as served models (all or none). */
export async function loadModels(positionals: string[], device: string | undefined): Promise<ServedModel[]> {
  const specs = positionals.map((p) => {
    const eq = p.lastIndexOf('=');
    const dir = eq > 0 ? p.slice(0, eq) : p;
    const name = eq > 0 ? p.slice(eq + 1) : basename(resolve(dir));
    if (!MODEL_NAME.test(name)) throw new Error(`model name '${name}' must be letters, digits, '.', '_' or '-' (name it with ${dir}=<name>)`);
    return { dir, name };
  });
  const dup = specs.find((s, i) => specs.findIndex((t) => t.name === s.name) !== i);
  if (dup) throw new Error(`two models named '${dup.name}': name them with <dir>=<name>`);
  const models: ServedModel[] = [];
  try {
    for (const s of specs) {
      process.stderr.write(`loading ${s.name} from ${s.dir}...\n`);
      models.push(await loadServedModel(s.dir, s.name, { device }));
    }
  } catch (e) {
    for (const m of models) await m.dispose();
    throw e;
  }
  return models;
}

/** Runs until SIGINT or SIGTERM, then `stop()`; resolves to the exit code. */
export function untilSignal(stop: () => Promise<void>): Promise<number> {
  return new Promise<number>((done) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`${signal}: finishing running requests, refusing new ones\n`);
      stop().then(
        () => done(0),
        (e) => {
          process.stderr.write(`shutdown: ${(e as Error).message}\n`);
          done(1);
        },
      );
    };
    process.once('SIGINT', () => onSignal('SIGINT'));
    process.once('SIGTERM', () => onSignal('SIGTERM'));
  });
}
