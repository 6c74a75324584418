/**
 * Device tiers (DLORA.md §4): a pure policy from a device's capability report (and, once the
 * step stream has measured it, its round-trip time and bandwidth) to a tier, its Kill-and-Revive
 * budget ρ and its micro-batch size. A device gets the best tier whose every minimum it meets;
 * tier C takes everything else. The operator can override the result (the app stores that).
 */

export type Tier = "A" | "B" | "C";
export const TIERS: readonly Tier[] = ["A", "B", "C"];

/** What a device reports at registration (its own kernel benchmark). */
export interface Capability {
  /** Sustained LoRA-kernel throughput over all its threads. */
  gflops: number;
  threads: number;
  memoryMb: number;
}

/** What the coordinator measures on the step stream. */
export interface Measured {
  rttMs: number;
  bandwidthMbps: number;
  /**
   * How much slower the device's side of a step has become since it was first measured (1 = as
   * first measured; 2 = steps take twice as long). Its reported GFLOP/s count divided by this.
   */
  slowdown?: number;
}

export interface TierBudget {
  /** Fraction of LoRA modules kept active by Kill and Revive. */
  rho: number;
  /** Sequences per micro-batch on the step stream. */
  microBatch: number;
}

/** Minimums a device must meet for a tier (the network ones only apply once measured). */
export interface TierRule extends TierBudget {
  minGflops: number;
  minMemoryMb: number;
  maxRttMs: number;
  minBandwidthMbps: number;
}

export interface TiersConfig {
  A: TierRule;
  B: TierRule;
  C: TierBudget;
}

/**
 * Defaults sized from DLORA.md §9: one modern core runs the LoRA kernels at 25–45 GFLOP/s, so
 * A is a laptop-class device on a LAN, B a phone-class one, C anything slower or far away.
 */
export const DEFAULT_TIERS: TiersConfig = {
  A: {
    rho: 0.5,
    microBatch: 8,
    minGflops: 20,
    minMemoryMb: 2048,
    maxRttMs: 50,
    minBandwidthMbps: 50,
  },
  B: {
    rho: 0.25,
    microBatch: 4,
    minGflops: 5,
    minMemoryMb: 512,
    maxRttMs: 150,
    minBandwidthMbps: 10,
  },
  C: { rho: 0.125, microBatch: 1 },
};

export interface TierAssignment extends TierBudget {
  tier: Tier;
  /** Why, in words an operator reads: the first minimum each better tier missed. */
  reason: string;
}

/** The first unmet minimum of `rule`, or null when the device meets them all. */
function unmet(rule: TierRule, c: Capability, m: Measured | undefined): string | null {
  const slowdown = m?.slowdown ?? 1;
  if (slowdown !== 1 && c.gflops / slowdown < rule.minGflops) {
    const effective = +(c.gflops / slowdown).toFixed(2);
    return `${effective} GFLOP/s (${c.gflops} reported, steps ${slowdown}× slower) < ${rule.minGflops}`;
  }
  if (c.gflops < rule.minGflops) return `${c.gflops} GFLOP/s < ${rule.minGflops}`;
  if (c.memoryMb < rule.minMemoryMb) return `${c.memoryMb} MB memory < ${rule.minMemoryMb}`;
  if (m !== undefined) {
    if (m.rttMs > rule.maxRttMs) return `round trip ${m.rttMs} ms > ${rule.maxRttMs}`;
    if (m.bandwidthMbps < rule.minBandwidthMbps) {
      return `bandwidth ${m.bandwidthMbps} Mbit/s < ${rule.minBandwidthMbps}`;
    }
  }
  return null;
}

export function assignTier(
  capability: Capability,
  measured?: Measured,
  config: TiersConfig = DEFAULT_TIERS,
): TierAssignment {
  const misses: string[] = [];
  for (const tier of ["A", "B"] as const) {
    const rule = config[tier];
    const miss = unmet(rule, capability, measured);
    if (miss === null) {
      const how = measured === undefined ? "capability only, network not measured yet" : "measured";
      return {
        tier,
        rho: rule.rho,
        microBatch: rule.microBatch,
        reason: [...misses, `meets tier ${tier} (${how})`].join("; "),
      };
    }
    misses.push(`not ${tier}: ${miss}`);
  }
  return {
    tier: "C",
    rho: config.C.rho,
    microBatch: config.C.microBatch,
    reason: misses.join("; "),
  };
}

/** What the tier of a device depends on (a DeviceRecord has these). */
export interface TierInputs {
  capability: Capability;
  measured: Measured | null;
  tierOverride: Tier | null;
}

/** The tier a device works at now: the operator's override, else the policy's answer. */
export function deviceTier(
  device: TierInputs,
  tiers: TiersConfig = DEFAULT_TIERS,
): TierBudget & { tier: Tier; source: "operator" | "policy"; reason: string } {
  if (device.tierOverride !== null) {
    return {
      tier: device.tierOverride,
      ...tierBudget(device.tierOverride, tiers),
      source: "operator",
      reason: "set by the operator",
    };
  }
  return {
    ...assignTier(device.capability, device.measured ?? undefined, tiers),
    source: "policy",
  };
}

/** The budget of a tier (used when the operator overrides the policy). */
export function tierBudget(tier: Tier, config: TiersConfig = DEFAULT_TIERS): TierBudget {
  return { rho: config[tier].rho, microBatch: config[tier].microBatch };
}

/** Throws a message naming the bad field when a tiers config cannot be used. */
export function validateTiersConfig(config: TiersConfig): void {
  for (const tier of TIERS) {
    const b = config[tier];
    if (!(b.rho > 0 && b.rho <= 1)) {
      throw new Error(`tiers.${tier}.rho must be in (0, 1], got ${b.rho}`);
    }
    if (!Number.isInteger(b.microBatch) || b.microBatch < 1) {
      throw new Error(`tiers.${tier}.microBatch must be an integer ≥ 1, got ${b.microBatch}`);
    }
  }
  const a = config.A, b = config.B;
  const ordered: [string, boolean][] = [
    ["minGflops", a.minGflops >= b.minGflops],
    ["minMemoryMb", a.minMemoryMb >= b.minMemoryMb],
    ["maxRttMs", a.maxRttMs <= b.maxRttMs],
    ["minBandwidthMbps", a.minBandwidthMbps >= b.minBandwidthMbps],
  ];
  for (const [field, ok] of ordered) {
    if (!ok) throw new Error(`tiers: A.${field} must be at least as strict as B.${field}`);
  }
}
