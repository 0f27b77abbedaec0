// Per-key quotas and concurrency shared by every front, kept in Redis: a token bucket of requests
// a minute (a hash) and the requests in flight (a sorted set of slots by lease expiry). One script
// admits a request atomically, so two fronts never both take a key's last slot. A front renews
// the leases of the slots it holds; a front that dies holds nothing past one lease.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { KeyEntry } from '../serve/keys.js';
import type { Admission, KeyGate, Limits } from '../serve/limits.js';
import { Unavailable } from '../serve/scheduler.js';
import type { RedisKeys } from './queues.js';

// KEYS: bucket, slots. ARGV: rate per minute (0: none), concurrency, slot id, lease ms.
// Returns {0} admitted, {1, seconds to wait} over quota, {2, in flight} at the concurrency limit.
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
if rate > 0 then
  local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or rate)
  local last = tonumber(redis.call('HGET', KEYS[1], 'last') or now)
  tokens = math.min(rate, tokens + (now - last) / 60000 * rate)
  local wait = 0
  if tokens >= 1 then tokens = tokens - 1 else wait = math.max(1, math.ceil((1 - tokens) * 60 / rate)) end
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'last', now)
  redis.call('PEXPIRE', KEYS[1], 120000)
  if wait > 0 then return { 1, wait } end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local n = redis.call('ZCARD', KEYS[2])
if n >= tonumber(ARGV[2]) then return { 2, n } end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) * 2)
return { 0, 0 }`;

// ARGV: prefix, lease ms, then (key name, slot id) pairs: renews each slot still held
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local k = ARGV[1] .. ':key:' .. ARGV[i] .. ':slots'
  redis.call('ZADD', k, 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', k, lease * 2)
end
return 0`;

export class RedisGate implements KeyGate {
  /** slot id -> key name, for the slots this front holds */
  readonly #held = new Map<string, string>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    readonly redis: Redis,
    readonly keys: RedisKeys,
    /** a slot not renewed for this long is free again (its front died) */
    readonly leaseMs = 30_000,
  ) {
    this.#timer = setInterval(() => void this.renew().catch(() => undefined), leaseMs / 3);
    this.#timer.unref();
  }

  async admit(k: KeyEntry | null, limits: Limits): Promise<Admission> {
    const name = k?.name ?? '';
    const rate = k?.ratePerMinute ?? limits.ratePerMinute;
    const most = k?.concurrency ?? limits.concurrency;
    const slot = randomBytes(9).toString('base64url');
    let r: [number, number];
    try {
      r = (await this.redis.eval(ADMIT, 2, this.keys.bucket(name), this.keys.slots(name), String(rate), String(most), slot, String(this.leaseMs))) as [number, number];
    } catch (e) {
      throw new Unavailable(`Redis is unreachable, so this key's quota cannot be checked (${(e as Error).message}); try again shortly`);
    }
    if (r[0] === 1) return { ok: false, code: 'rate_limited', message: `this key's quota of ${rate} requests a minute is used up`, retryAfter: r[1] };
    if (r[0] === 2) return { ok: false, code: 'too_many_requests', message: `this key has ${r[1]} requests queued or running, its limit`, retryAfter: 1 };
    this.#held.set(slot, name);
    return {
      ok: true,
      release: () => {
        if (!this.#held.delete(slot)) return;
        // not given back (Redis away): its lease runs out instead
        this.redis.zrem(this.keys.slots(name), slot).catch(() => undefined);
      },
    };
  }

  async renew(): Promise<void> {
    if (!this.#held.size) return;
    const args: string[] = [];
    for (const [slot, name] of this.#held) args.push(name, slot);
    await this.redis.eval(RENEW, 0, this.keys.prefix, String(this.leaseMs), ...args);
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
