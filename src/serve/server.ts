// The HTTP server (fastify): models, their tokenizers and module trees, one POST per request
// kind, jobs, keys, limits, metrics. A request is checked in order of cost: key (401), model
// (404), key's allow-list (403), draining (503), quota, concurrency and queue (429), body size
// before reading it (413), then decoded and validated whole (400) before it is queued. The graph
// is data: nothing in a request ever becomes code, and model names are looked up in a map,
// never on the file system.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import pino, { type Logger } from 'pino';
import { ENVELOPE_CONTENT_TYPE, ENVELOPE_VERSION, EnvelopeError, decodeRequest, type RequestKind } from '../remote/envelope.js';
import { Job, JobStore, type ApiError } from './jobs.js';
import { KeyRing, type KeyEntry } from './keys.js';
import { makeMetrics, type Metrics } from './metrics.js';
import type { ServedModel } from './runner.js';
import { QueueFull, Scheduler, Unavailable, type JobScheduler } from './scheduler.js';
import { RequestError, validateRequest } from './validate.js';
import { DEFAULT_LIMITS, MemoryGate, type KeyGate, type Limits } from './limits.js';

export { DEFAULT_LIMITS, type Limits } from './limits.js';

/** A model as the HTTP side sees it: what validation and GET /v1/models need (no weights). */
export type ModelEntry = Omit<ServedModel, 'run' | 'generate' | 'dispose'> & {
  /** live workers serving it (behind Redis) */
  workers?: number;
  /** where a front decodes a request to validate it, when not on the model's device (a front has no GPU) */
  decodeDevice?: string;
};

/** Where a front's models, jobs and key counts live when they are not in this process (scale/front.ts). */
export interface ServerBackend {
  /** the models requests may name now; throws Unavailable when that cannot be known */
  models(): ReadonlyMap<string, ModelEntry>;
  /** the models GET /v1/models lists (default: all of models()) */
  listed?(): ModelEntry[];
  scheduler: JobScheduler;
  gate: KeyGate;
  close(): Promise<void>;
}

export interface ServerOptions {
  /** the models this process runs (or a backend) */
  models?: ServedModel[];
  /** instead of models: queues elsewhere, given the server's metrics and logger */
  backend?: (ctx: { metrics: Metrics; logger: Logger; limits: Limits }) => ServerBackend | Promise<ServerBackend>;
  host?: string;
  port?: number;
  /** the keys; without them only loopback hosts are allowed, and requests need no key */
  keys?: KeyRing;
  limits?: Partial<Limits>;
  /** an idle model under concurrent load waits this long to batch requests (default 2) */
  batchWindowMs?: number;
  /** requests per batched forward at most (default 16) */
  maxBatch?: number;
  /** pino level (default 'info'); logs never hold keys or tensor data */
  logLevel?: string;
  /** where logs go (default stdout) */
  logStream?: NodeJS.WritableStream;
}

export interface RunningServer {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly metrics: Metrics;
  readonly scheduler: JobScheduler;
  /** Refuses new requests (503), finishes running ones, stops listening, disposes the models. */
  close(): Promise<void>;
}

const KINDS: readonly RequestKind[] = ['trace', 'session', 'generate'];

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::ffff:127.0.0.1';
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly extra: { node?: number; template?: string } = {},
  ) {
    super(message);
  }
}

function sendError(reply: FastifyReply, e: ApiError | HttpError, headers: Record<string, string> = {}): FastifyReply {
  const err = e instanceof HttpError ? { status: e.status, code: e.code, message: e.message, ...e.extra } : e;
  const h = e instanceof HttpError ? { ...e.headers, ...headers } : headers;
  const { status, ...body } = err;
  return reply.code(status).headers(h).send({ error: body });
}

declare module 'fastify' {
  interface FastifyRequest {
    tsKey: KeyEntry | null;
    /** the key's slot this request holds until its job takes it (or it is refused) */
    tsSlot: (() => void) | null;
  }
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  if (!options.keys && !isLoopback(host))
    throw new Error(`refusing to serve on ${host} without keys: pass --keys keys.json (make one with 'torchsight keys add keys.json <name>'), or serve on 127.0.0.1`);
  const logger: Logger = pino(
    { level: options.logLevel ?? 'info', redact: ['req.headers.authorization', 'req.headers.cookie'], base: { pid: process.pid } },
    options.logStream ?? process.stdout,
  );
  const metrics = makeMetrics();
  const store = new JobStore(limits.resultTtlMs);
  const local = options.models ?? [];
  const localModels = new Map(local.map((m) => [m.name, m]));
  const backend: ServerBackend = options.backend
    ? await options.backend({ metrics, logger, limits })
    : {
        models: () => localModels,
        scheduler: new Scheduler(local, { ...limits, batchWindowMs: options.batchWindowMs ?? 2, maxBatch: options.maxBatch ?? 16, compressAbove: 64 * 1024 }, metrics, logger),
        gate: new MemoryGate(),
        close: async () => undefined,
      };
  const { scheduler, gate } = backend;
  const listed = () => backend.listed?.() ?? [...backend.models().values()];
  let draining = false;

  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: limits.maxRequestBytes,
    // no prototype pollution from any JSON body this server parses
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    return503OnClosing: true,
    // idle keep-alive connections close with the server; busy ones finish their answer
    forceCloseConnections: 'idle',
  });
  app.decorateRequest('tsKey', null);
  app.decorateRequest('tsSlot', null);
  // a request refused or dropped before its job was queued gives its key's slot back
  const release = async (req: FastifyRequest) => {
    req.tsSlot?.();
    req.tsSlot = null;
  };
  app.addHook('onResponse', release);
  app.addHook('onRequestAbort', release);
  for (const type of [ENVELOPE_CONTENT_TYPE, 'application/octet-stream'])
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: limits.maxRequestBytes }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof HttpError) return sendError(reply, err);
    if (err instanceof Unavailable) return sendError(reply, new HttpError(503, err.code, err.message, { 'retry-after': String(err.retryAfter) }));
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) req.log.error({ err }, 'internal error');
    const code = status === 413 ? 'too_large' : status === 415 ? 'unsupported_media_type' : status === 400 ? 'bad_request' : status === 503 ? 'shutting_down' : 'internal';
    const message = status === 413 ? `the request body exceeds this server's limit of ${limits.maxRequestBytes} bytes` : status >= 500 ? 'internal server error' : err.message;
    return sendError(reply, new HttpError(status, code, message));
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, new HttpError(404, 'not_found', `no such endpoint: ${req.method} ${req.url.split('?')[0]}`)));

  // keys, for every route under /v1 but health (decided by the route matched, not the raw URL)
  app.addHook('onRequest', async (req) => {
    const route = req.routeOptions.url;
    if (!route?.startsWith('/v1/') || route === '/v1/health') return;
    if (!options.keys) {
      if (!isLoopback(req.socket.remoteAddress ?? '')) throw new HttpError(403, 'forbidden', 'this server takes requests without a key from this machine only');
      // a reverse proxy on this machine connects from loopback too: a request it forwarded comes
      // from elsewhere, so without keys it is refused (serve behind a proxy with --keys)
      if (req.headers['x-forwarded-for'] !== undefined || req.headers.forwarded !== undefined || req.headers['x-real-ip'] !== undefined)
        throw new HttpError(403, 'forbidden', 'this server takes requests without a key from this machine only, and this one was forwarded by a proxy: serve with --keys');
      return;
    }
    const auth = req.headers.authorization;
    const m = typeof auth === 'string' ? /^Bearer\s+(\S{1,512})\s*$/i.exec(auth) : null;
    if (!m) throw new HttpError(401, 'unauthorized', 'an API key is required: send Authorization: Bearer <key>', { 'www-authenticate': 'Bearer' });
    const entry = options.keys.find(m[1]);
    if (!entry) throw new HttpError(401, 'unauthorized', 'the API key is not valid', { 'www-authenticate': 'Bearer' });
    req.tsKey = entry;
  });

  // requests by model, kind and status, refusals included (an unknown model's name is not a label)
  app.addHook('onResponse', async (req, reply) => {
    const kind = /\/v1\/models\/:name\/(trace|session|generate)$/.exec(req.routeOptions.url ?? '')?.[1];
    if (!kind) return;
    const name = (req.params as { name?: string }).name ?? '';
    let known = false;
    try {
      known = backend.models().has(name);
    } catch {
      // models unknown for now (Redis out of reach): counted as unknown
    }
    metrics.requests.inc({ model: known ? name : 'unknown', kind, status: String(reply.statusCode) });
  });

  const modelFor = (req: FastifyRequest, name: string): ModelEntry => {
    const models = backend.models();
    const model = models.get(name);
    if (!model) throw new HttpError(404, 'no_model', `no model named '${String(name).slice(0, 100)}' on this server (it has: ${[...models.keys()].join(', ')})`);
    const allowed = req.tsKey?.models;
    if (allowed && !allowed.includes(name)) throw new HttpError(403, 'forbidden', `this key may not use model '${name}'`);
    return model;
  };
  const info = (m: ModelEntry) => {
    const { name, device, dtype, workers, tree, manifest } = m;
    return { name, architecture: manifest.architecture, device, dtype, ...(workers !== undefined ? { workers } : {}), sites: m.target.sites, ops: m.target.ops ?? [], tree, manifest };
  };
  const jobFor = async (req: FastifyRequest, id: string): Promise<Job> => {
    let job = store.get(id);
    if (!job && scheduler.lookup) {
      // another front's job, found in the shared queues
      const found = await scheduler.lookup(id);
      // a lookup that ran beside this one may have stored it first
      job = store.get(id) ?? found;
      if (job) store.add(job);
    }
    // another key's job reads as missing
    if (!job || job.owner !== (req.tsKey?.name ?? null)) throw new HttpError(404, 'no_job', `no job '${String(id).slice(0, 64)}' (finished jobs are kept ${Math.round(limits.resultTtlMs / 1000)} s)`);
    return job;
  };
  const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
  const nameParams = { type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 256 } } } as const;

  app.get('/v1/health', async () => ({
    status: draining ? 'draining' : 'ok',
    version: ENVELOPE_VERSION,
    models: listed().map((m) => m.name),
    queued: scheduler.queued,
    running: scheduler.running,
  }));
  app.get('/metrics', async (_req, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.get('/v1/models', async (req) => ({ models: listed().filter((m) => !req.tsKey?.models || req.tsKey.models.includes(m.name)).map(info) }));
  app.get<{ Params: { name: string } }>('/v1/models/:name', { schema: { params: nameParams } }, async (req) => info(modelFor(req, req.params.name)));
  app.get<{ Params: { name: string } }>('/v1/models/:name/tokenizer.json', { schema: { params: nameParams } }, async (req, reply) =>
    reply.header('content-type', 'application/json').send(modelFor(req, req.params.name).tokenizerJson),
  );

  // one POST per request kind; the checks that need no body run before it is read
  for (const kind of KINDS) {
    app.post<{ Params: { name: string }; Querystring: { blocking?: boolean } }>(
      `/v1/models/:name/${kind}`,
      {
        schema: { params: nameParams, querystring: { type: 'object', additionalProperties: false, properties: { blocking: { type: 'boolean' } } } },
        preValidation: async (req) => {
          modelFor(req, req.params.name);
          if (draining) throw new HttpError(503, 'shutting_down', 'the server is shutting down', { 'retry-after': '5' });
          if (scheduler.queued >= limits.maxQueue) throw new HttpError(429, 'queue_full', `the queue is full (${limits.maxQueue} requests waiting)`, { 'retry-after': '1' });
          const a = await gate.admit(req.tsKey, limits);
          if (!a.ok) throw new HttpError(429, a.code, a.message, { 'retry-after': String(a.retryAfter) });
          // held from now, so requests whose bodies are still arriving count against the limit
          req.tsSlot = a.release;
        },
      },
      async (req, reply) => {
        const model = modelFor(req, req.params.name);
        const body = req.body;
        if (!Buffer.isBuffer(body)) throw new HttpError(415, 'unsupported_media_type', `send the request as ${ENVELOPE_CONTENT_TYPE}`);
        let decoded;
        try {
          decoded = await decodeRequest(body, { maxBytes: limits.maxRequestBytes * 4, device: model.decodeDevice ?? model.device });
        } catch (e) {
          if (e instanceof EnvelopeError) throw new HttpError(e.status, e.code, e.message);
          throw e;
        }
        try {
          if (decoded.kind !== kind) throw new RequestError(`this endpoint takes '${kind}' requests; the envelope holds a '${decoded.kind}' request`);
          validateRequest(decoded, model.target, limits);
        } catch (e) {
          decoded.dispose();
          if (e instanceof RequestError) throw new HttpError(400, e.code, e.message, {}, e.node !== undefined ? { node: e.node } : {});
          throw e;
        }
        const job = new Job(model.name, kind, req.tsKey?.name ?? null, decoded, body.byteLength);
        store.add(job);
        try {
          await scheduler.enqueue(job, body);
        } catch (e) {
          if (e instanceof QueueFull) {
            job.fail({ status: 429, code: 'queue_full', message: e.message });
            throw new HttpError(draining ? 503 : 429, draining ? 'shutting_down' : 'queue_full', e.message, { 'retry-after': String(e.retryAfter) });
          }
          if (e instanceof Unavailable) job.fail({ status: 503, code: e.code, message: e.message });
          throw e;
        }
        // the job holds the key's slot until it finishes
        const slot = req.tsSlot!;
        req.tsSlot = null;
        void job.settled.then(() => {
          slot();
          // a streamed answer is counted here (onResponse does not see it), by the job's outcome
          if (job.awaitingFetch) metrics.requests.inc({ model: model.name, kind, status: String(job.error?.status ?? 200) });
          req.log.info({ job: job.id, model: model.name, kind, state: job.state, ms: Date.now() - job.received, code: job.error?.code }, 'job finished');
        });
        req.log.info({ job: job.id, model: model.name, kind, bytes: body.byteLength, key: job.owner ?? undefined }, 'job queued');
        reply.header('x-torchsight-job', job.id);
        if (req.query.blocking === false) return reply.code(202).header('location', `/v1/jobs/${job.id}`).send(job.status());
        // a client that goes away cancels its request
        const onClose = () => {
          if (!reply.raw.writableFinished) scheduler.cancel(job, 'client');
        };
        reply.raw.on('close', onClose);
        if (String(req.headers.accept ?? '').includes('application/x-ndjson')) {
          job.awaitingFetch = true;
          return streamEvents(reply, job, true);
        }
        await job.settled;
        reply.raw.off('close', onClose);
        return sendJobResult(reply, job);
      },
    );
  }

  app.get<{ Params: { id: string } }>('/v1/jobs/:id', { schema: { params: idParams } }, async (req) => (await jobFor(req, req.params.id)).status());
  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', { schema: { params: idParams } }, async (req) => {
    const job = await jobFor(req, req.params.id);
    scheduler.cancel(job, 'client');
    return job.status();
  });
  app.get<{ Params: { id: string }; Querystring: { wait?: number } }>(
    '/v1/jobs/:id/result',
    { schema: { params: idParams, querystring: { type: 'object', additionalProperties: false, properties: { wait: { type: 'integer', minimum: 0, maximum: 60_000 } } } } },
    async (req, reply) => {
      const job = await jobFor(req, req.params.id);
      if (!job.finishedState && req.query.wait) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([job.settled, new Promise((r) => (timer = setTimeout(r, req.query.wait)))]);
        clearTimeout(timer);
      }
      if (!job.finishedState) return reply.code(202).send(job.status());
      return sendJobResult(reply, job);
    },
  );
  app.get<{ Params: { id: string } }>('/v1/jobs/:id/events', { schema: { params: idParams } }, async (req, reply) => streamEvents(reply, await jobFor(req, req.params.id), false));

  function sendJobResult(reply: FastifyReply, job: Job): FastifyReply {
    job.delivered();
    if (job.state === 'done' && job.result) return reply.code(200).header('content-type', ENVELOPE_CONTENT_TYPE).header('x-torchsight-job', job.id).send(Buffer.from(job.result.buffer, job.result.byteOffset, job.result.byteLength));
    // the job's own failure is final: the header tells clients not to retry a 503 or 429 here
    return sendError(reply, job.error ?? { status: 500, code: 'internal', message: 'the job ended without a result' }, { 'x-torchsight-job-state': job.state });
  }

  /** NDJSON: the job's status, the tokens made so far, then each event until it finishes. */
  function streamEvents(reply: FastifyReply, job: Job, cancelOnClose: boolean): FastifyReply {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-accel-buffering': 'no', 'x-torchsight-job': job.id });
    const write = (e: object) => res.write(JSON.stringify(e) + '\n');
    write(job.statusEvent());
    for (const t of job.tokens) write({ type: 'token', id: job.id, ...t });
    if (job.finishedState) {
      res.end();
      return reply;
    }
    const off = job.on((e) => {
      write(e);
      if (e.type === 'status' && (e.state === 'done' || e.state === 'failed' || e.state === 'cancelled')) res.end();
    });
    res.on('close', () => {
      off();
      if (cancelOnClose && !job.finishedState) {
        scheduler.cancel(job, 'client');
        job.delivered(); // nobody will fetch it
      }
    });
    return reply;
  }

  await app.listen({ host, port: options.port ?? 8080 });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : options.port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  let closing: Promise<void> | undefined;
  return {
    url,
    app: app as unknown as FastifyInstance,
    metrics,
    scheduler,
    close() {
      closing ??= (async () => {
        draining = true;
        await scheduler.drain();
        // clients that followed their job's events fetch its result next: give them a moment
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(store.undelivered()), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
        clearTimeout(timer);
        await app.close();
        store.close();
        await backend.close();
        for (const m of local) await m.dispose();
      })();
      return closing;
    },
  };
}
