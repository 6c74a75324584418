/**
 * The random baseline (DLORA.md §3): after the warm-up, every decision draws a fresh random subset
 * of ⌈ρ·N⌉ modules (scores are ignored). Only a fraction budget makes sense for it.
 */
import {
  budgetCount,
  type Decision,
  type DecisionInput,
  inModuleOrder,
  noChange,
  scheduleAt,
  type SelectionEvent,
  type SelectionPolicy,
  shuffle,
  trained,
} from "./policy.ts";

export const random: SelectionPolicy = {
  name: "random",
  decide(input: DecisionInput): Decision {
    const { state, modules } = input;
    if (!scheduleAt(input.step, input.config, input.totalSteps).decision) return noChange(state);
    if (!("rho" in input.budget)) {
      throw new Error("random: needs a fraction budget ρ, not a threshold τ");
    }
    const k = budgetCount(input.budget.rho, modules.length);
    const pick = new Set(shuffle(modules, input.rng).slice(0, k));
    const before = new Set(trained(state));
    const killed = modules.filter((m) => before.has(m) && !pick.has(m));
    const revived = modules.filter((m) => !before.has(m) && pick.has(m));
    const events: SelectionEvent[] = [
      ...killed.map((module) => ({ kind: "kill" as const, module })),
      ...revived.map((module) => ({ kind: "revive" as const, module })),
    ];
    return { active: inModuleOrder(modules, pick), probing: [], killed, revived, events };
  },
};
