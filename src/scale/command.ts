// `torchsight worker <dir>[=<name>] ... --redis URL [options]`: loads the models, takes their jobs
// off Redis (worker.ts), prints `worker ready: <names>` on stdout when it takes jobs, and on
// SIGINT/SIGTERM stops taking jobs, finishes the running ones and exits.
import { createServer, type Server } from 'node:http';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { native } from '../native.js';
import { DEFAULT_LIMITS } from '../serve/limits.js';
import { intFlags, loadModels, untilSignal } from '../serve/command.js';
import { checkRedisUrl } from './queues.js';
import { startWorker } from './worker.js';

export const WORKER_USAGE = `usage: torchsight worker <model-dir>[=<name>] [more dirs] --redis redis://HOST:6379 [options]
  --redis URL            the Redis the fronts queue requests on (required)
  --device D             cpu | cuda | cuda:N (default: cuda when available); one worker per GPU
  --threads N            torch intra-op threads (default: libtorch's, one per core)
  --max-batch N          jobs taken at once per model, merged into one forward (default 16)
  --batch-window-ms N    under load, how long an idle model waits to batch requests (default 2; 0 off)
  --timeout-ms N         running time per request; past it the request is cancelled (default ${DEFAULT_LIMITS.timeoutMs})
  --max-result-bytes N   encoded result (default ${DEFAULT_LIMITS.maxResultBytes})
  --lock-ms N            a job's lock; a dead worker's jobs run again on another after it (default 10000)
  --heartbeat-ms N       liveness heartbeat (default 2000; live for three of them)
  --metrics-port P       Prometheus metrics of this worker (batch sizes, forward time) at
                         http://127.0.0.1:P/metrics (0 picks a free port; default none)
  --redis-prefix P       Redis key prefix, the same as the fronts' (default torchsight)
  --log-level L          pino level (default info)`;

export async function workerCommand(args: string[]): Promise<number> {
  const num = { type: 'string' } as const;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      redis: { type: 'string' },
      device: { type: 'string' },
      threads: num,
      'max-batch': num,
      'batch-window-ms': num,
      'timeout-ms': num,
      'max-result-bytes': num,
      'lock-ms': num,
      'heartbeat-ms': num,
      'redis-prefix': { type: 'string' },
      'metrics-port': num,
      'log-level': { type: 'string', default: 'info' },
    },
  });
  if (positionals.length === 0 || !values.redis) {
    console.error(WORKER_USAGE);
    return 2;
  }
  const int = intFlags(values);
  const redis = checkRedisUrl(values.redis);
  const threads = int('threads', 1);
  if (threads !== undefined) native().setNumThreads(threads);
  const options = {
    maxBatch: int('max-batch', 1),
    batchWindowMs: int('batch-window-ms', 0),
    timeoutMs: int('timeout-ms', 1),
    maxResultBytes: int('max-result-bytes', 1024),
    lockMs: int('lock-ms', 200),
    heartbeatMs: int('heartbeat-ms', 50),
  };
  const models = await loadModels(positionals, values.device);
  const logger = pino({ level: values['log-level'], base: { pid: process.pid } }, process.stderr);
  const worker = await startWorker({ models, redis, prefix: values['redis-prefix'], logger, ...options });
  const metricsPort = int('metrics-port', 0);
  let metrics: Server | undefined;
  if (metricsPort !== undefined) {
    // loopback only: a scraper on this machine (or a tunnel) reads it
    metrics = createServer((req, res) => {
      if (req.url !== '/metrics') return res.writeHead(404).end();
      worker.metrics.registry.metrics().then((text) => res.writeHead(200, { 'content-type': worker.metrics.registry.contentType }).end(text));
    });
    await new Promise<void>((r) => metrics!.listen(metricsPort, '127.0.0.1', r));
  }
  const port = (metrics?.address() as { port?: number } | null)?.port;
  console.log(`worker ready: ${models.map((m) => m.name).join(', ')}${port ? ` (metrics on http://127.0.0.1:${port}/metrics)` : ''}`);
  return untilSignal(async () => {
    metrics?.close();
    await worker.close();
  });
}
