/**
 * Token-bucket rate limiting keyed by client (address or credential), on an injected clock so
 * tests can step time. A bucket holds `burst` tokens, refills at `perSecond`, and a request
 * takes one; an empty bucket answers how long until the next token.
 */

export interface RateLimitConfig {
  /** Requests allowed at once after a quiet period. */
  burst: number;
  /** Sustained requests per second. */
  perSecond: number;
  /** Buckets kept before idle (full) ones are dropped; bounds memory under address spraying. */
  maxKeys: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitConfig = { burst: 60, perSecond: 20, maxKeys: 10_000 };

export type TakeResult = { ok: true } | { ok: false; retryAfterS: number };

interface Bucket {
  tokens: number;
  /** Clock time (ms) at which `tokens` was last brought up to date. */
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(readonly config: RateLimitConfig, private readonly now: () => number) {
    if (!(config.burst >= 1) || !(config.perSecond > 0)) {
      throw new Error(
        `rate limit: burst must be ≥ 1 and perSecond > 0, got ${config.burst} and ${config.perSecond}`,
      );
    }
  }

  take(key: string): TakeResult {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.config.maxKeys) this.evict(now);
      b = { tokens: this.config.burst, at: now };
      this.buckets.set(key, b);
    } else this.refill(b, now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    const waitS = (1 - b.tokens) / this.config.perSecond;
    return { ok: false, retryAfterS: Math.max(1, Math.ceil(waitS)) };
  }

  get size(): number {
    return this.buckets.size;
  }

  private refill(b: Bucket, now: number): void {
    const elapsedS = Math.max(0, now - b.at) / 1000;
    b.tokens = Math.min(this.config.burst, b.tokens + elapsedS * this.config.perSecond);
    b.at = now;
  }

  /** Drops full buckets (they carry no state), then the oldest if still over the limit. */
  private evict(now: number): void {
    for (const [key, b] of this.buckets) {
      this.refill(b, now);
      if (b.tokens >= this.config.burst) this.buckets.delete(key);
    }
    const over = this.buckets.size - this.config.maxKeys + 1;
    let i = 0;
    for (const key of this.buckets.keys()) {
      if (i++ >= over) break;
      this.buckets.delete(key);
    }
  }
}
