// The server's limits (their defaults are the flags' defaults, command.ts) and the per-key
// state they are enforced with: a token bucket of requests a minute and the requests in flight.

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

