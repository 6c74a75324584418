/**
 * One-shot pruning (DLORA.md §3 baseline): at the end of the warm-up keep the top modules by
 * c_i (or those with c_i ≥ τ·median(c)) and never revive. A later, smaller budget (re-tiering)
 * prunes further among the survivors; a larger one revives nothing.
 */
import {
  type Decision,
  type DecisionInput,
  noChange,
  overBudget,
  scheduleAt,
  scoreOf,
  selectByBudget,
  type SelectionPolicy,
} from "./policy.ts";

export const oneshot: SelectionPolicy = {
  name: "oneshot",
  decide(input: DecisionInput): Decision {
    const { step, state, config } = input;
    if (!scheduleAt(step, config, input.totalSteps).decision) return noChange(state);
    const first = step === config.warmup;
    const shrink = "rho" in input.budget && overBudget(input, input.budget, state.active);
    if (!first && !shrink) return noChange(state);
    const keep = selectByBudget(input, state.active, state.active, "oneshot");
    const active = state.active.filter((m) => keep.has(m));
    const killed = state.active.filter((m) => !keep.has(m));
    return {
      active,
      probing: [],
      killed,
      revived: [],
      events: killed.map((module) => ({
        kind: "kill" as const,
        module,
        score: scoreOf(input, module, "oneshot"),
      })),
    };
  },
};
