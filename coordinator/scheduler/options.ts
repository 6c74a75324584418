/**
 * From a job's `kr` options (coordinator/schemas.ts) to what the selection loop runs: the policy,
 * the score the devices report, the schedule and the budget. The budget is a function of the
 * device's current tier ρ, read at every event, so a re-tiered device gets its new budget at the
 * next decision; a per-job `budget` overrides the tier.
 */
import { type ScoreName, SCORES } from "../../runtime/device/scores.ts";
import { policyByName } from "./mod.ts";
import {
  type Budget,
  budgetCount,
  type SelectionConfig,
  type SelectionPolicy,
  validateConfig,
} from "./policy.ts";

/**
 * Defaults measured with bench/kr-sim-dev.ts (stories260K, rank 8, 200 steps, batch 4×128; see
 * the README's Kill-and-Revive section): a short warm-up (5%; every warm-up step costs the full
 * device work; 2.5% measured ~1% worse held-out NLL and 10% no better), the effective-weight
 * score (the paper's per-parameter change ranks the small attention modules with the MLP ones
 * and measured ~12% worse held-out NLL at ρ = 0.25), few short probes (q = 0.1, ⅛ of a period:
 * longer or more probes cost device work and measured no better), and a doubled learning rate
 * for the modules trained after the warm-up (they carry the whole update; `all` gains nothing
 * from a larger lr: 1e-2 ≈ 6e-3, 2e-2 much worse).
 */
export const KR_DEFAULTS = {
  score: "effective" as ScoreName,
  /** Warm-up = this fraction of the run's steps (at least 1). */
  warmupFraction: 0.05,
  /** Period = this fraction of the run's steps when one pass over the data is longer. */
  periodFraction: 0.2,
  /** Probe window = this fraction of the period (at least 1 step). */
  probeOfPeriod: 0.125,
  /** q. */
  reviveFraction: 0.1,
  /** Learning-rate multiplier of the selected modules after the warm-up. */
  lrScale: 2,
  /** Hysteresis: a probe displaces an active module only if its score is this factor higher. */
  margin: 1,
} as const;

/** The job's `kr` options (the stored spec; `score`, `budget`, … are optional extensions). */
export interface KrOptions {
  policy: string;
  /** Steps with every module active; default KR_DEFAULTS.warmupFraction of the run. */
  warmup?: number;
  /**
   * Steps between decisions; null = one pass over the device's training data, at most
   * KR_DEFAULTS.periodFraction of the run.
   */
  period: number | null;
  /** Probe window in steps; null = KR_DEFAULTS.probeOfPeriod of the period. */
  probe: number | null;
  /** q; default KR_DEFAULTS.reviveFraction. */
  revive_fraction?: number;
  mode: "topk" | "threshold";
  tau: number | null;
  export: "active" | "all";
  /** Score the devices report; default KR_DEFAULTS.score (the paper's is "change"). */
  score?: string;
  /** ρ for this job, overriding the device tier's. */
  budget?: number | null;
  /** What ρ is a share of: the module count (default) or the modules' summed cost r·(in+out). */
  budget_over?: "count" | "cost";
  /**
   * Learning-rate multiplier for the modules trained after the warm-up (policies other than
   * `all`); default KR_DEFAULTS.lrScale, 1 = the job's lr throughout.
   */
  lr_scale?: number;
  /**
   * kr's hysteresis (≥ 1): at a probe end a probe takes an active module's place only if its score
   * exceeds that module's by this factor; default KR_DEFAULTS.margin (1 = plain ranking).
   */
  margin?: number;
  /**
   * Rank reallocation: the modules kept after the warm-up grow to the job's rank × this (capped
   * per module at min(in, out)), spending the LoRA parameters the killed modules free on the
   * modules that matter. `"budget"`: the largest rank at which the active modules hold no more
   * parameters than `all` trains (r · Σ_all (in+out) / Σ_active (in+out)); default 1 (no growth).
   * The device's LoRA compute grows with it; its traffic does not.
   */
  rank_scale?: number | "budget";
}

export interface Selection {
  policy: SelectionPolicy;
  score: ScoreName;
  config: SelectionConfig;
  exportModules: "active" | "all";
  /** Multiplier of the job's lr from the end of the warm-up on (1 for `all`). */
  lrScale: number;
  /** Rank multiplier of the kept modules from the end of the warm-up on (1 = no growth). */
  rankScale: number | "budget";
  /** The budget at an event, given the device's tier ρ at that moment. */
  budget(tierRho: number): Budget;
}

/**
 * The kept modules' lr multiplier when the job gives none: KR_DEFAULTS.lrScale makes up for the
 * parameters killed; with rank reallocation they are back (in the kept modules), and a doubled lr
 * overshoots (bench/kr-sim-dev.ts, README "Kill and Revive"), so 1.
 */
export function defaultLrScale(rankScale: number | "budget" | undefined): number {
  return rankScale === undefined || rankScale === 1 ? KR_DEFAULTS.lrScale : 1;
}

export function selectionFromOptions(
  o: KrOptions,
  run: { totalSteps: number; stepsPerPass: number },
): Selection {
  const policy = policyByName(o.policy);
  const score = o.score ?? KR_DEFAULTS.score;
  if (!(SCORES as readonly string[]).includes(score)) {
    throw new Error(`unknown score "${score}"; choose from ${SCORES.join(", ")}`);
  }
  const period = o.period ??
    Math.max(
      1,
      Math.round(Math.min(run.stepsPerPass, KR_DEFAULTS.periodFraction * run.totalSteps)),
    );
  const config: SelectionConfig = {
    warmup: o.warmup ?? Math.max(1, Math.round(KR_DEFAULTS.warmupFraction * run.totalSteps)),
    period,
    probeFraction: o.revive_fraction ?? KR_DEFAULTS.reviveFraction,
    probeWindow: o.probe ?? Math.max(1, Math.round(KR_DEFAULTS.probeOfPeriod * period)),
  };
  const margin: number = o.margin ?? KR_DEFAULTS.margin;
  if (margin !== 1) config.margin = margin; // 1 = no hysteresis, left out of the config
  validateConfig(config);
  const rankScale = o.policy === "all" ? 1 : o.rank_scale ?? 1;
  const lrScale = o.policy === "all" ? 1 : o.lr_scale ?? defaultLrScale(rankScale);
  if (!(lrScale > 0 && Number.isFinite(lrScale))) {
    throw new Error(`kr: lr_scale must be a positive number, got ${o.lr_scale}`);
  }
  if (rankScale !== "budget" && !(rankScale >= 1 && Number.isFinite(rankScale))) {
    throw new Error(`kr: rank_scale must be a number ≥ 1 or "budget", got ${o.rank_scale}`);
  }
  if (rankScale === "budget" && o.mode === "threshold") {
    throw new Error('kr: rank_scale "budget" needs a fraction budget ρ (mode topk), not threshold');
  }
  const over = o.budget_over ?? "count";
  if (over !== "count" && over !== "cost") {
    throw new Error(`kr: budget_over must be "count" or "cost", got "${over}"`);
  }
  let budget: (tierRho: number) => Budget;
  if (o.mode === "threshold") {
    const tau = o.tau;
    if (tau === null || !(tau >= 0)) {
      throw new Error("kr: threshold mode needs tau (kill when c_i < tau · median(c_active))");
    }
    if (o.policy === "random") {
      throw new Error("kr: the random policy needs mode topk (a fraction budget), not threshold");
    }
    budget = () => ({ tau });
  } else if (o.budget !== undefined && o.budget !== null) {
    const rho = o.budget;
    budgetCount(rho, 1); // validates ρ ∈ (0, 1]
    budget = () => (over === "cost" ? { rho, over } : { rho });
  } else {
    budget = (tierRho) => (over === "cost" ? { rho: tierRho, over } : { rho: tierRho });
  }
  return {
    policy,
    score: score as ScoreName,
    config,
    exportModules: o.export,
    lrScale,
    rankScale,
    budget,
  };
}
