// Redis for serving beyond one machine: how to connect, the name of every key torchsight keeps
// there, and each model's BullMQ queue with the job data a front puts on it. One Redis (not a
// Redis Cluster: the scripts name keys they build), any number of fronts and workers.
import { Queue, type QueueOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { ApiError, JobState } from '../serve/jobs.js';
import type { RequestKind } from '../remote/envelope.js';

/** The data of a queued job; its request body waits apart, as binary (keys.request). */
export interface JobData {
  kind: RequestKind;
  /** the key's name, null without keys */
  owner: string | null;
  bytes: number;
  /** ms since the epoch, at the front */
  received: number;
  /** how long the worker keeps the result, ms */
  ttlMs: number;
  /** the front's bound on the decoded (decompressed) request */
  maxDecodedBytes: number;
  /** a small request's body (base64), which the worker gets with the job; a larger one waits at keys.request */
  body?: string;
  /** the front's reply channel (keys.reply): a small result is published there as well */
  reply?: string;
}

/** Request bodies up to this size travel inline in the job's data (kept with the finished job, so small). */
export const INLINE_MAX_BYTES = 4 * 1024;

/** Results up to this size also travel on the front's reply channel (Redis buffers a slow subscriber's messages, up to its output limit). */
export const REPLY_MAX_BYTES = 256 * 1024;

/** A reply message: the job id's length (one byte), the id, the encoded result. */
export function replyFrame(jobId: string, result: Uint8Array): Buffer {
  const id = Buffer.from(jobId);
  if (id.length > 255) throw new Error(`a job id of ${id.length} bytes does not fit a reply frame`);
  return Buffer.concat([Buffer.from([id.length]), id, result]);
}

export function readReply(frame: Buffer): { jobId: string; result: Uint8Array } | undefined {
  const n = frame[0];
  if (frame.length < 1 + n) return undefined;
  return { jobId: frame.toString('utf8', 1, 1 + n), result: new Uint8Array(frame.buffer, frame.byteOffset + 1 + n, frame.length - 1 - n) };
}

/** What a worker's processor returns: the result's size (the bytes are at keys.result) or the job's error. */
export type JobOutcome = { ok: true; bytes: number } | { ok: false; state: Extract<JobState, 'failed' | 'cancelled'>; error: ApiError };

/** A token step a worker reports as the job's progress (it travels on BullMQ's event stream). */
export interface TokenProgress {
  step: number;
  tokens: number[];
}

export type RedisKeys = ReturnType<typeof redisKeys>;

/** The keys under one prefix (default 'torchsight'); a test or a second deployment takes its own. */
export function redisKeys(prefix = 'torchsight') {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(prefix)) throw new Error(`--redis-prefix '${prefix}' must be 1 to 64 letters, digits, '.', '_' or '-'`);
  return {
    prefix,
    /** BullMQ's own prefix: its keys are `${bull}:${model}:...` */
    bull: `${prefix}:q`,
    /** the names of the models workers have published */
    models: `${prefix}:models`,
    /** hash: info (JSON), tokenizer, version */
    model: (name: string) => `${prefix}:model:${name}`,
    /** sorted set: worker id -> when its heartbeat expires (Redis time, ms) */
    workers: (name: string) => `${prefix}:workers:${name}`,
    /** a queued request's body */
    request: (id: string) => `${prefix}:req:${id}`,
    /** a finished job's encoded result, kept for its TTL */
    result: (id: string) => `${prefix}:res:${id}`,
    /** set when a job is cancelled, for the worker that runs (or would run) it */
    cancel: (id: string) => `${prefix}:cancel:${id}`,
    /** pub/sub: ids of cancelled jobs, for the workers running them */
    cancelChannel: `${prefix}:cancel`,
    /** pub/sub: one front's results, straight from the workers (no read after the completion) */
    reply: (front: string) => `${prefix}:reply:${front}`,
    /** per API key: the rate bucket, and the slots of requests in flight (sorted set by lease expiry) */
    bucket: (key: string) => `${prefix}:key:${key}:bucket`,
    slots: (key: string) => `${prefix}:key:${key}:slots`,
  };
}

/** Checks a Redis URL (redis:// or rediss://) and says what is wrong with a bad one. */
export function checkRedisUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--redis: '${url}' is not a URL (expected redis://host:6379)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`--redis: '${url}' must be a redis:// or rediss:// URL`);
  return url;
}

/** The URL without its password, for messages and logs. */
export function showUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.href;
}

/** A fail-fast command Redis has not answered in this long fails (a paused or cut-off Redis keeps the connection open). */
export const FAIL_FAST_TIMEOUT_MS = 3000;

/** How long a close waits for BullMQ before it forces the connections down. */
export const CLOSE_LIMIT_MS = 3000;

/** the copies BullMQ made of a connection (a QueueEvents' reads, a Worker's blocking fetch), for forceDown */
const copies = new WeakMap<Redis, Set<Redis>>();

/**
 * A connection. `failFast`: a command while disconnected fails at once, and one Redis does not
 * answer within FAIL_FAST_TIMEOUT_MS fails then (a front answers 503 rather than hold the client;
 * such a connection never carries a blocking command); otherwise commands wait for the
 * reconnection (workers, and BullMQ's blocking reads, which need maxRetriesPerRequest null).
 * `bulk`: a fail-fast one with no command timeout, for request bodies and results, whose transfer
 * may take longer (a 256 MiB result over 1 GbE takes about 2 s). `copiesOnly`: the connection
 * never connects itself, it is only the template of the ones BullMQ copies from it (QueueEvents
 * reads on a copy of its own). Reconnects forever, backing off to 2 s; TCP keepalive finds a
 * peer that vanished without closing.
 */
export function connect(url: string, options: { failFast?: boolean; bulk?: boolean; name?: string; copiesOnly?: boolean } = {}): Redis {
  const r = new Redis(url, {
    maxRetriesPerRequest: options.failFast ? 1 : null,
    enableOfflineQueue: !options.failFast,
    commandTimeout: options.failFast && !options.bulk ? FAIL_FAST_TIMEOUT_MS : undefined,
    keepAlive: 10_000,
    connectionName: options.name,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    lazyConnect: options.copiesOnly ?? false,
  });
  // errors show as the state the callers check; ioredis only prints them without a listener
  r.on('error', () => undefined);
  // BullMQ duplicates a connection for its blocking reads, and a close of its that waits for an
  // 'end' a reconnecting client never emits leaves them to forceDown
  const made = new Set<Redis>();
  copies.set(r, made);
  r.duplicate = (override) => {
    const c = Redis.prototype.duplicate.call(r, override);
    c.on('error', () => undefined);
    made.add(c);
    c.once('end', () => made.delete(c));
    return c;
  };
  return r;
}

/** Disconnects a connection and every copy made of it, whatever their state, without waiting for Redis. */
export function forceDown(r: Redis): void {
  for (const c of copies.get(r) ?? []) c.disconnect();
  copies.get(r)?.clear();
  r.disconnect();
}

/** Resolves true when `p` settles within `ms`, false when the time ran out first. */
export function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
  ]).finally(() => clearTimeout(timer));
}

export function queueOptions(keys: RedisKeys, connection: Redis): QueueOptions {
  return { connection, prefix: keys.bull };
}

/** A model's queue (a front's end of it). */
export function modelQueue(keys: RedisKeys, connection: Redis, model: string): Queue<JobData, JobOutcome> {
  return new Queue<JobData, JobOutcome>(model, queueOptions(keys, connection));
}

/** Reads a processor's return value as the completed event or the job gives it (a JSON string or the object). */
export function parseOutcome(v: unknown): JobOutcome {
  const o = (typeof v === 'string' ? JSON.parse(v) : v) as JobOutcome | null;
  if (!o || typeof o !== 'object' || typeof o.ok !== 'boolean') return { ok: false, state: 'failed', error: { status: 500, code: 'internal', message: 'the worker returned no outcome' } };
  return o;
}
