// Which models are served, and by how many live workers. A worker publishes each model it holds
// (what a front needs to validate requests and answer GET /v1/models: the module tree, manifest,
// sites, tokenizer) and then heartbeats; a front reads the catalog every poll. Times are Redis's
// own (TIME inside the scripts), so clocks of different machines never disagree about liveness.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ModelEntry } from '../serve/server.js';
import type { ServedModel } from '../serve/runner.js';
import type { RedisKeys } from './queues.js';

/** What a worker publishes of a model (all but the tokenizer, which travels as bytes). */
interface PublishedInfo {
  name: string;
  manifest: ModelEntry['manifest'];
  tree: string;
  device: string;
  dtype: string;
  sites: string[];
  /** the operations of .source (op sites), as the worker's model lists them */
  ops: ModelEntry['target']['ops'];
  applicable: string[];
  vocabSize: number;
  maxPositions: number;
}

// heartbeat: ZADD the worker with its expiry; says whether the model's hash is still there (it is
// not after Redis restarted without persistence, and the worker publishes it again)
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
return redis.call('HEXISTS', KEYS[2], 'version')`;

// the catalog: each published model's live workers, ms since its last worker's heartbeat expired
// (negative: one is live), and the version of its published info
const CATALOG = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local wk = ARGV[1] .. ':workers:' .. n
  local live = redis.call('ZCOUNT', wk, now, '+inf')
  local last = redis.call('ZRANGE', wk, -1, -1, 'WITHSCORES')
  local ago = -1
  if last[2] then ago = now - tonumber(last[2]) else ago = 1e15 end
  local ver = redis.call('HGET', ARGV[1] .. ':model:' .. n, 'version') or ''
  out[#out + 1] = { n, live, tostring(ago), ver }
end
return out`;

/** A worker's side: publishes its models, heartbeats every `everyMs`, and withdraws on stop. */
export class Publisher {
  readonly #timer: NodeJS.Timeout;
  readonly #infos: { name: string; fields: Record<string, string | Buffer> }[];
  #beating = false;

  constructor(
    readonly redis: Redis,
    readonly keys: RedisKeys,
    readonly workerId: string,
    models: readonly ServedModel[],
    readonly everyMs: number,
    readonly onError: (e: Error) => void,
  ) {
    this.#infos = models.map((m) => {
      const info: PublishedInfo = {
        name: m.name,
        manifest: m.manifest,
        tree: m.tree,
        device: m.device,
        dtype: m.dtype,
        sites: [...m.target.sites],
        ops: m.target.ops ?? [],
        applicable: [...m.target.applicable],
        vocabSize: m.target.vocabSize,
        maxPositions: m.target.maxPositions,
      };
      const json = JSON.stringify(info);
      const version = createHash('sha256').update(json).update(m.tokenizerJson).digest('hex').slice(0, 16);
      return { name: m.name, fields: { info: json, tokenizer: m.tokenizerJson, version } };
    });
    this.#timer = setInterval(() => this.#tick(), everyMs);
    this.#timer.unref();
  }

  /**
   * A beat of the timer. None while the last one is unanswered or Redis is not connected: the
   * connection would queue them all, and when Redis came back (empty, after a restart) each queued
   * one would find the models missing and publish them again, tokenizers and all. The next beat
   * after the reconnection publishes them once.
   */
  #tick(): void {
    if (this.#beating || this.redis.status !== 'ready') return;
    this.#beating = true;
    this.beat()
      .catch(this.onError)
      .finally(() => (this.#beating = false));
  }

  /** One heartbeat for every model, publishing a model's info where it is missing. */
  async beat(): Promise<void> {
    const p = this.redis.pipeline();
    for (const m of this.#infos) p.eval(HEARTBEAT, 2, this.keys.workers(m.name), this.keys.model(m.name), this.workerId, String(this.everyMs * 3));
    const res = (await p.exec()) ?? [];
    const missing = this.#infos.filter((_, i) => res[i]?.[1] !== 1);
    if (!missing.length) return;
    const q = this.redis.multi();
    for (const m of missing) q.hset(this.keys.model(m.name), m.fields).sadd(this.keys.models, m.name);
    await q.exec();
  }

  /** Withdraws this worker at once (its models stay published for the fronts' grace period). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    const p = this.redis.pipeline();
    for (const m of this.#infos) p.zrem(this.keys.workers(m.name), this.workerId);
    await p.exec();
  }
}

/** A model in a front's catalog. */
export interface CatalogEntry extends ModelEntry {
  workers: number;
  /** ms since its last worker was live (negative while one is) */
  ago: number;
}

/** A front's side: the models workers serve, refreshed by `refresh()`. */
export class Catalog {
  #entries = new Map<string, CatalogEntry>();
  readonly #byVersion = new Map<string, ModelEntry>();

  constructor(
    readonly redis: Redis,
    readonly keys: RedisKeys,
  ) {}

  get entries(): ReadonlyMap<string, CatalogEntry> {
    return this.#entries;
  }

  /** Reads the catalog (one script, plus the info of a model whose version changed). Throws when Redis does. */
  async refresh(): Promise<void> {
    const rows = (await this.redis.eval(CATALOG, 1, this.keys.models, this.keys.prefix)) as [string, number, string, string][];
    const next = new Map<string, CatalogEntry>();
    for (const [name, workers, ago, version] of rows) {
      if (!version) continue;
      let base = this.#byVersion.get(`${name} ${version}`);
      if (!base) {
        const [info, tokenizer] = await this.redis.hmgetBuffer(this.keys.model(name), 'info', 'tokenizer');
        if (!info || !tokenizer) continue;
        base = entryOf(JSON.parse(info.toString('utf8')) as PublishedInfo, tokenizer);
        this.#byVersion.set(`${name} ${version}`, base);
      }
      next.set(name, { ...base, workers: Number(workers), ago: Number(ago) });
    }
    this.#entries = next;
  }
}

function entryOf(info: PublishedInfo, tokenizerJson: Buffer): ModelEntry {
  return {
    name: info.name,
    manifest: info.manifest,
    tokenizerJson,
    tree: info.tree,
    device: info.device,
    decodeDevice: 'cpu',
    dtype: info.dtype,
    target: { sites: info.sites, ops: info.ops ?? [], applicable: new Set(info.applicable), vocabSize: info.vocabSize, maxPositions: info.maxPositions },
  };
}
