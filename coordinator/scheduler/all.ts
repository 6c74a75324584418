/** No selection: every module trains at every step (the "all modules" baseline). */
import { type Decision, type DecisionInput, type SelectionPolicy } from "./policy.ts";

export const all: SelectionPolicy = {
  name: "all",
  decide(input: DecisionInput): Decision {
    const before = new Set([...input.state.active, ...input.state.probing]);
    const revived = input.modules.filter((m) => !before.has(m));
    return {
      active: [...input.modules],
      probing: [],
      killed: [],
      revived,
      events: revived.map((module) => ({ kind: "revive" as const, module })),
    };
  },
};
