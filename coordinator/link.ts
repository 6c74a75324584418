/**
 * What the coordinator measures about a device (DLORA.md §4): the link's round-trip time and
 * bandwidth (from PING/PONG frames on the step stream), and drift of the device's step time.
 * Pure functions and a small tracker; executor.ts sends the PINGs and feeds the step reports.
 *
 * Round trip: the least of several small PINGs (a PING waits while the device computes, so the
 * minimum is the link's own). Bandwidth: a PING with `bytes` of padding comes back as a PONG of
 * the same size, so 2·bytes cross the link in (t − rtt); the best of the large PINGs counts.
 */
import type { Measured } from "./tiers.ts";

/** One PING answered: its padding bytes and the seconds from send to PONG. */
export interface PingSample {
  paddingBytes: number;
  seconds: number;
}

/** Round trip (ms) and bandwidth (Mbit/s), or null without a small and a large sample. */
export function estimateLink(
  samples: readonly PingSample[],
  largeBytes: number,
): { rttMs: number; bandwidthMbps: number } | null {
  const small = samples.filter((s) => s.paddingBytes < largeBytes).map((s) => s.seconds);
  const large = samples.filter((s) => s.paddingBytes >= largeBytes);
  if (small.length === 0 || large.length === 0) return null;
  const rtt = Math.min(...small);
  // Faster than the round trip allows (clock granularity): count the transfer as 1 µs.
  const mbps = Math.max(
    ...large.map((s) => (2 * s.paddingBytes * 8) / Math.max(1e-6, s.seconds - rtt) / 1e6),
  );
  return { rttMs: round(rtt * 1000, 3), bandwidthMbps: round(mbps, 1) };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export interface DriftConfig {
  /** Steps whose median sets the baseline (after `skip` steps). */
  window: number;
  /** First steps ignored (warm-up: kernels compile, caches fill). */
  skip: number;
  /** Drift when the recent median is ≥ factor × baseline or ≤ baseline / factor. */
  factor: number;
}

export const DEFAULT_DRIFT: DriftConfig = { window: 5, skip: 1, factor: 1.5 };

export interface Drift {
  /** recent median / baseline median (> 1: slower). */
  ratio: number;
  baselineSeconds: number;
  recentSeconds: number;
}

/**
 * Watches the device's side of each step (step time minus the coordinator's own compute: the
 * device's compute and the link). `observe` answers a Drift when the last `window` steps' median
 * moved by `factor` from the baseline; the baseline then restarts from the drifted level.
 * `reset` (e.g. when the set of active modules changes, so the device's work changes) starts a
 * new baseline.
 */
export class DriftTracker {
  #skip: number;
  #baseline: number | null = null;
  #recent: number[] = [];

  constructor(readonly config: DriftConfig = DEFAULT_DRIFT) {
    if (!Number.isInteger(config.window) || config.window < 1) {
      throw new Error(`drift window must be an integer ≥ 1, got ${config.window}`);
    }
    if (!(config.factor > 1)) throw new Error(`drift factor must be > 1, got ${config.factor}`);
    this.#skip = config.skip;
  }

  get baselineSeconds(): number | null {
    return this.#baseline;
  }

  reset(): void {
    this.#baseline = null;
    this.#recent = [];
  }

  observe(seconds: number): Drift | null {
    if (!(seconds >= 0) || !Number.isFinite(seconds)) return null;
    if (this.#skip > 0) {
      this.#skip--;
      return null;
    }
    this.#recent.push(seconds);
    if (this.#recent.length > this.config.window) this.#recent.shift();
    if (this.#recent.length < this.config.window) return null;
    const recent = medianOf(this.#recent);
    if (this.#baseline === null) {
      this.#baseline = recent;
      this.#recent = [];
      return null;
    }
    const ratio = recent / this.#baseline;
    if (ratio < this.config.factor && ratio > 1 / this.config.factor) return null;
    const drift = { ratio, baselineSeconds: this.#baseline, recentSeconds: recent };
    this.#baseline = recent;
    this.#recent = [];
    return drift;
  }
}

function medianOf(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 === 1 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/**
 * The measurement after a drift: the new link figures, and the device's slowdown (step time
 * against the time it had when first measured) compounded, so the tier policy can discount the
 * capability the device reported at registration.
 */
export function afterDrift(
  before: Measured | null,
  link: { rttMs: number; bandwidthMbps: number },
  drift: Drift | null,
): Measured {
  const slowdown = (before?.slowdown ?? 1) * (drift?.ratio ?? 1);
  return { ...link, slowdown: round(slowdown, 3) };
}
