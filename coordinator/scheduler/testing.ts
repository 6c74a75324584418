/** A driver for the policy tests: runs a policy over a run with synthetic scores. */
import { rng as makeRng } from "../../tests/util.ts";
import {
  type Budget,
  type Decision,
  initialState,
  keepOf,
  nextState,
  scheduleAt,
  type SchedulerState,
  type SelectionConfig,
  type SelectionPolicy,
  trained,
} from "./policy.ts";

/** r·(in+out) of a stories260K-shaped module (dim 64, kv 32, hidden 172): q/o 128, k/v 96, mlp 236. */
export function costs260k(modules: readonly string[]): Map<string, number> {
  const per: Record<string, number> = {
    q: 128,
    k: 96,
    v: 96,
    o: 128,
    gate: 236,
    up: 236,
    down: 236,
  };
  return new Map(modules.map((m) => [m, per[m.split(".")[1]]]));
}

/** 8 layers × 7 projections, "0.q" … "7.down". */
export const MODULES56: string[] = Array.from(
  { length: 8 },
  (_, l) => ["q", "k", "v", "o", "gate", "up", "down"].map((p) => `${l}.${p}`),
).flat();

export interface Trace {
  step: number;
  decision: Decision;
  state: SchedulerState;
  scores: Map<string, number>;
}

/**
 * Runs `policy` from step 1 to `totalSteps`; at every event the modules that trained since the
 * previous event get `score(module, from, to)`. Returns the state at the end and every event.
 */
export function runSchedule(opts: {
  policy: SelectionPolicy;
  modules: readonly string[];
  config: SelectionConfig;
  totalSteps: number;
  budget: (step: number) => Budget;
  score: (module: string, from: number, to: number) => number;
  seed: number;
  /** Per-module costs for a cost budget. */
  costs?: ReadonlyMap<string, number>;
}): { state: SchedulerState; trace: Trace[] } {
  const rng = makeRng(opts.seed);
  let state = initialState(opts.modules);
  let last = 0;
  const trace: Trace[] = [];
  for (let step = 1; step <= opts.totalSteps; step++) {
    const ev = scheduleAt(step, opts.config, opts.totalSteps);
    if (!ev.decision && !ev.probeEnd && !ev.final) continue;
    const scores = new Map(trained(state).map((m) => [m, opts.score(m, last, step)]));
    const budget = opts.budget(step);
    const decision = opts.policy.decide({
      step,
      totalSteps: opts.totalSteps,
      modules: opts.modules,
      scores,
      state,
      budget,
      rng,
      config: opts.config,
      costs: opts.costs,
    });
    state = nextState(state, decision, step, keepOf(budget, opts.modules.length));
    trace.push({ step, decision, state, scores });
    last = step;
  }
  return { state, trace };
}
