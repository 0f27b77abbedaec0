// The server's limits (their defaults are the flags' defaults, command.ts) and the per-key
// state they are enforced with: a token bucket of requests a minute and the requests in flight,
// kept in this process (MemoryGate) or, behind several fronts, in Redis (scale/store.ts).
import type { KeyEntry } from './keys.js';

export interface Limits {
  /** requests waiting over all models */
  maxQueue: number;
  /** graph nodes per request */
  maxNodes: number;
  /** request body bytes (checked before the body is read) */
  maxRequestBytes: number;
  /** encoded result bytes */
  maxResultBytes: number;
  /** running time per request, ms */
  timeoutMs: number;
  /** how long a finished job's result is kept, ms */
  resultTtlMs: number;
  /** rows times tokens per request */
  maxTokens: number;
  /** new tokens per generation */
  maxNewTokens: number;
  /** requests queued or running per key (a key's own setting wins) */
  concurrency: number;
  /** requests per minute per key, 0 for no quota (a key's own setting wins) */
  ratePerMinute: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxQueue: 256,
  maxNodes: 100_000,
  maxRequestBytes: 64 * 1024 * 1024,
  maxResultBytes: 256 * 1024 * 1024,
  timeoutMs: 60_000,
  resultTtlMs: 10 * 60_000,
  maxTokens: 1 << 20,
  maxNewTokens: 4096,
  concurrency: 32,
  ratePerMinute: 0,
};

/** Per key: a token bucket of requests per minute, and requests queued or running. */
export class KeyState {
  tokens: number;
  last = Date.now();
  inFlight = 0;
  constructor(readonly rate: number) {
    this.tokens = rate;
  }
  /** 0 when a request may go now, else seconds to wait */
  take(): number {
    if (this.rate <= 0) return 0;
    const now = Date.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 60_000) * this.rate);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.tokens) * 60) / this.rate));
  }
}


/** A key's admission: a slot to give back when its request ends, or why it must wait. */
export type Admission =
  | { ok: true; release: () => void }
  | { ok: false; code: 'rate_limited' | 'too_many_requests'; message: string; retryAfter: number };

/** Where the per-key quota and concurrency are counted. */
export interface KeyGate {
  admit(key: KeyEntry | null, limits: Limits): Promise<Admission>;
}

/** The quota and concurrency of each key, counted in this process. */
export class MemoryGate implements KeyGate {
  readonly #states = new Map<string, KeyState>();

  async admit(k: KeyEntry | null, limits: Limits): Promise<Admission> {
    const name = k?.name ?? '';
    let s = this.#states.get(name);
    if (!s) this.#states.set(name, (s = new KeyState(k?.ratePerMinute ?? limits.ratePerMinute)));
    const wait = s.take();
    if (wait > 0) return { ok: false, code: 'rate_limited', message: `this key's quota of ${s.rate} requests a minute is used up`, retryAfter: wait };
    const most = k?.concurrency ?? limits.concurrency;
    if (s.inFlight >= most) return { ok: false, code: 'too_many_requests', message: `this key has ${s.inFlight} requests queued or running, its limit`, retryAfter: 1 };
    s.inFlight++;
    let held = true;
    const state = s;
    return {
      ok: true,
      release: () => {
        if (held) state.inFlight--;
        held = false;
      },
    };
  }
}
