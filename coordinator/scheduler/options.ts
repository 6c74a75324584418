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

/** The job's `kr` options (the stored spec; `score` and `budget` are optional extensions). */
export interface KrOptions {
  policy: string;
  /** Steps with every module active; default 10% of the run. */
  warmup?: number;
  /** Steps between decisions; null = one pass over the device's training data. */
  period: number | null;
  /** Probe window in steps; null = one period. */
  probe: number | null;
  /** q. */
  revive_fraction: number;
  mode: "topk" | "threshold";
  tau: number | null;
  export: "active" | "all";
  /** Score the devices report; default the paper's parameter-change norm. */
  score?: string;
  /** ρ for this job, overriding the device tier's. */
  budget?: number | null;
}

export interface Selection {
  policy: SelectionPolicy;
  score: ScoreName;
  config: SelectionConfig;
  exportModules: "active" | "all";
  /** The budget at an event, given the device's tier ρ at that moment. */
  budget(tierRho: number): Budget;
}

export function selectionFromOptions(
  o: KrOptions,
  run: { totalSteps: number; stepsPerPass: number },
): Selection {
  const policy = policyByName(o.policy);
  const score = o.score ?? "change";
  if (!(SCORES as readonly string[]).includes(score)) {
    throw new Error(`unknown score "${score}"; choose from ${SCORES.join(", ")}`);
  }
  const period = o.period ?? Math.max(1, Math.round(run.stepsPerPass));
  const config: SelectionConfig = {
    warmup: o.warmup ?? Math.round(0.1 * run.totalSteps),
    period,
    probeFraction: o.revive_fraction,
    probeWindow: o.probe ?? period,
  };
  validateConfig(config);
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
    budget = () => ({ rho });
  } else {
    budget = (tierRho) => ({ rho: tierRho });
  }
  return { policy, score: score as ScoreName, config, exportModules: o.export, budget };
}
