/**
 * Kill and Revive (DLORA.md §3): after the warm-up, every decision keeps the top ⌈ρ·N⌉ modules by
 * c_i (or, in threshold mode, those with c_i ≥ τ·median(c_active)) and kills the rest; then a
 * fraction q of the killed modules, longest-killed first (ties in random order), is revived for a
 * probe window. At the end of the window the probes are ranked with the active modules on the
 * scores of that window and the top stay; the losers are killed again (their kill clock restarts,
 * so the next probes go to modules not tried for longer). When the budget grows (the device was
 * re-tiered) the longest-killed modules fill the room at the next event. A probe end is a ranking
 * event too: the budget passed in then applies to it. With `config.margin` > 1 (hysteresis) a probe
 * ranks on c_i / margin: it displaces an active module only if it beats that module's score by the
 * margin. The scores of a ranking all cover the same window (since the previous event), so the
 * probes and the active modules are compared over equal steps.
 */
import {
  type Decision,
  type DecisionInput,
  fillBudget,
  inModuleOrder,
  longestKilledFirst,
  noChange,
  scheduleAt,
  scoreOf,
  selectByBudget,
  type SelectionEvent,
  type SelectionPolicy,
  trained,
} from "./policy.ts";

export const kr: SelectionPolicy = {
  name: "kr",
  decide(input: DecisionInput): Decision {
    const { step, state, modules, config, rng } = input;
    const ev = scheduleAt(step, config, input.totalSteps);
    if (!ev.decision && !ev.probeEnd && !(ev.final && state.probing.length > 0)) {
      return noChange(state);
    }
    const score = (m: string) => scoreOf(input, m, "kr");
    const candidates = trained(state);
    const margin = config.margin ?? 1;
    const ranking = margin === 1 || state.probing.length === 0 ? input : {
      ...input,
      scores: new Map(
        candidates.map((m) => [m, state.probing.includes(m) ? score(m) / margin : score(m)]),
      ),
    };
    const keep = selectByBudget(ranking, candidates, state.active, "kr");
    const events: SelectionEvent[] = [];
    const killed: string[] = [];
    const active = new Set<string>();
    const wasProbing = new Set(state.probing);
    for (const m of candidates) {
      const probe = wasProbing.has(m);
      if (keep.has(m)) {
        active.add(m);
        if (probe) events.push({ kind: "promote", module: m, score: score(m) });
      } else {
        killed.push(m);
        events.push({ kind: probe ? "drop" : "kill", module: m, score: score(m) });
      }
    }
    const since: Record<string, number> = { ...state.killedSince };
    for (const m of killed) since[m] = step;
    const trainedNow = new Set(candidates);
    const revived: string[] = [];
    // Room under a grown budget: revive the longest-killed outright.
    if ("rho" in input.budget) {
      const pool = modules.filter((m) => !trainedNow.has(m));
      const fill = pool.length === 0
        ? []
        : fillBudget(input, input.budget, longestKilledFirst(pool, since, rng), [...active]);
      for (const m of fill) {
        active.add(m);
        revived.push(m);
        events.push({ kind: "revive", module: m });
      }
    }
    // New probes, only at a decision.
    let probing: string[] = [];
    if (ev.decision && config.probeFraction > 0) {
      const dead = modules.filter((m) => !active.has(m));
      const count = Math.ceil(config.probeFraction * dead.length - 1e-9);
      probing = longestKilledFirst(dead, since, rng).slice(0, count);
      for (const m of probing) {
        revived.push(m);
        events.push({ kind: "probe", module: m });
      }
    }
    return {
      active: inModuleOrder(modules, active),
      probing: inModuleOrder(modules, probing),
      killed: inModuleOrder(modules, killed),
      revived: inModuleOrder(modules, revived),
      events,
    };
  },
};
