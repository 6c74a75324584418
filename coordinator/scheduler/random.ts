/**
 * The random baseline (DLORA.md §3): after the warm-up, every decision draws a fresh random subset
 * within the fraction budget — ⌈ρ·N⌉ modules, or by cost as many as fit in random order (scores are
 * ignored). Only a fraction budget makes sense for it.
 */
import {
  type Decision,
  type DecisionInput,
  fillBudget,
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
    const pick = new Set(fillBudget(input, input.budget, shuffle(modules, input.rng)));
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
