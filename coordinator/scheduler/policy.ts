/**
 * Module selection (DLORA.md §3, issue 5): which LoRA modules a device trains next. A policy is a
 * pure function of (step, scores, history, budget, rng) → decision; the caller owns the state and
 * advances it with `nextState`. Kill and Revive, the random subset, the one-shot prune and "all"
 * are implementations of the same interface (STYLE.md, "Policies: Flower's strategies"): the loop
 * that drives them never knows which one it runs.
 *
 * Time is counted in optimizer steps completed. Steps 0 … warmup−1 train every module; the first
 * decision is at step `warmup` (never at step 0: nothing has been measured), then every `period`
 * steps. Probes started at a decision run for
 * `probeWindow` steps and end at an event of their own (or at the next decision when the window
 * is not shorter than the period). At every event the caller passes `scores`: c_i measured since
 * the previous event for every module that trained in between (active or probing).
 */

/**
 * ρ: keep the top ⌈ρ·N⌉ modules (`over: "count"`, the default) or the top modules whose summed
 * cost stays within ρ·Σcost of all modules (`over: "cost"`, needs `DecisionInput.costs`): a tier's
 * budget is a share of the device's LoRA work, and a 64-wide q costs half of a 172-wide gate.
 * τ: kill the modules with c_i < τ·median(c_active).
 */
export type Budget = { rho: number; over?: "count" | "cost" } | { tau: number };

export interface SelectionConfig {
  /** Steps with every module active before the first decision. */
  warmup: number;
  /** Steps between decisions. */
  period: number;
  /** q: fraction of the killed modules revived for a probe at each decision (0 = never). */
  probeFraction: number;
  /** Steps a probe runs before it is scored and ranked with the active modules. */
  probeWindow: number;
  /**
   * Hysteresis (≥ 1; default 1 = none): when probes are ranked with the active modules, a probe
   * takes an active module's place only if its score exceeds that module's by this factor
   * (probes rank on c_i / margin).
   */
  margin?: number;
}

/** One decision as the history keeps it. */
export interface DecisionRecord {
  step: number;
  /** Modules kept active, probes excluded. */
  active: string[];
  probing: string[];
  killed: string[];
  revived: string[];
  /** ⌈ρ·N⌉ in fraction mode, null in threshold mode. */
  keep: number | null;
}

/** What the caller keeps between decisions (JSON-serialisable, so the store can hold it). */
export interface SchedulerState {
  /** Modules training, probes excluded, in module order. */
  active: string[];
  /** Modules revived for a probe window, in module order. */
  probing: string[];
  /** Step the current probes started at; null when none run. */
  probeStart: number | null;
  /** Step each killed module was last deactivated at (only killed modules appear). */
  killedSince: Record<string, number>;
  history: DecisionRecord[];
}

export type SelectionEventKind =
  | "kill" // active → killed
  | "probe" // killed → probing
  | "revive" // killed → active (room under the budget)
  | "promote" // probing → active (won its ranking)
  | "drop"; // probing → killed (lost its ranking)

export interface SelectionEvent {
  kind: SelectionEventKind;
  module: string;
  /** The score the move was decided on, when there was one. */
  score?: number;
}

export interface DecisionInput {
  step: number;
  totalSteps: number;
  /** Every module of the job, in a fixed order (e.g. "0.q", "0.k", …). */
  modules: readonly string[];
  /** c_i since the previous event for the modules that trained in between. */
  scores: ReadonlyMap<string, number>;
  state: SchedulerState;
  budget: Budget;
  /** Uniform in [0, 1); the only source of randomness. */
  rng: () => number;
  config: SelectionConfig;
  /**
   * Relative cost of each module (r·(in + out): its LoRA FLOPs, bytes on the wire and parameters
   * per token are all proportional to it). Needed by a cost budget; ignored otherwise.
   */
  costs?: ReadonlyMap<string, number>;
}

export interface Decision {
  /** Modules to train from now on, probes excluded, in module order. */
  active: string[];
  /** Modules revived for a probe window starting now, in module order. */
  probing: string[];
  /** Modules deactivated by this decision (lost probes included). */
  killed: string[];
  /** Modules reactivated by this decision (new probes and direct revivals). */
  revived: string[];
  events: SelectionEvent[];
}

export interface SelectionPolicy {
  readonly name: string;
  decide(input: DecisionInput): Decision;
}

/** What happens at a step. */
export interface ScheduleEvent {
  /** Rank, kill, and start probes. */
  decision: boolean;
  /** Probes started at the last decision are scored and ranked now. */
  probeEnd: boolean;
  /** The last step of the run: rank any probes, start none. */
  final: boolean;
}

/** Whether `step` (steps completed) is a decision point, a probe end or the end of the run. */
export function scheduleAt(
  step: number,
  config: SelectionConfig,
  totalSteps = Infinity,
): ScheduleEvent {
  validateConfig(config);
  const final = step === totalSteps;
  if (step <= 0 || step < config.warmup || step > totalSteps) {
    return { decision: false, probeEnd: false, final };
  }
  const phase = (step - config.warmup) % config.period;
  const decision = phase === 0 && !final;
  const probeEnd = step > config.warmup && config.probeWindow > 0 &&
    config.probeWindow < config.period && phase === config.probeWindow;
  return { decision, probeEnd, final };
}

export function validateConfig(c: SelectionConfig): void {
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) {
      throw new Error(`module selection: ${name} must be an integer ≥ ${min}, got ${v}`);
    }
  };
  int("warmup", c.warmup, 0);
  int("period", c.period, 1);
  int("probeWindow", c.probeWindow, 0);
  if (!(c.probeFraction >= 0 && c.probeFraction <= 1)) {
    throw new Error(
      `module selection: probeFraction must be in [0, 1], got ${c.probeFraction}`,
    );
  }
  if (c.margin !== undefined && !(c.margin >= 1 && Number.isFinite(c.margin))) {
    throw new Error(
      `module selection: margin must be a finite number ≥ 1 (1 = no hysteresis), got ${c.margin}`,
    );
  }
}

/** ⌈ρ·N⌉ (at least 1, at most N); a tiny tolerance keeps 0.1·30 at 3. */
export function budgetCount(rho: number, n: number): number {
  if (!(rho > 0 && rho <= 1)) {
    throw new Error(`module selection: budget ρ must be in (0, 1], got ${rho}`);
  }
  return Math.min(n, Math.max(1, Math.ceil(rho * n - 1e-9)));
}

/** Every module active, nothing killed: the state before the first decision. */
export function initialState(modules: readonly string[]): SchedulerState {
  return { active: [...modules], probing: [], probeStart: null, killedSince: {}, history: [] };
}

/** Modules the device trains now (active and probing), in module order. */
export function trained(state: { active: string[]; probing: string[] }): string[] {
  return [...state.active, ...state.probing];
}

/** The decision that changes nothing (not an event, or a policy that keeps everything). */
export function noChange(state: SchedulerState): Decision {
  return {
    active: [...state.active],
    probing: [...state.probing],
    killed: [],
    revived: [],
    events: [],
  };
}

/** The state after applying `decision` at `step`. */
export function nextState(
  state: SchedulerState,
  decision: Decision,
  step: number,
  keep: number | null = null,
): SchedulerState {
  const killedSince = { ...state.killedSince };
  for (const m of [...decision.active, ...decision.probing]) delete killedSince[m];
  for (const m of decision.killed) killedSince[m] = step;
  const changed = decision.killed.length + decision.revived.length > 0 ||
    decision.probing.length + state.probing.length > 0;
  const history = changed
    ? [...state.history, {
      step,
      active: [...decision.active],
      probing: [...decision.probing],
      killed: [...decision.killed],
      revived: [...decision.revived],
      keep,
    }]
    : state.history;
  return {
    active: [...decision.active],
    probing: [...decision.probing],
    probeStart: decision.probing.length > 0 ? step : null,
    killedSince,
    history,
  };
}

// ---- helpers shared by the policies ------------------------------------------------------------

/** Sorts `subset` into the order of `modules`. */
export function inModuleOrder(modules: readonly string[], subset: Iterable<string>): string[] {
  const want = new Set(subset);
  return modules.filter((m) => want.has(m));
}

/** The score of a module that trained since the last event; missing is an error. */
export function scoreOf(input: DecisionInput, module: string, policy: string): number {
  const c = input.scores.get(module);
  if (c === undefined || !Number.isFinite(c)) {
    throw new Error(
      `${policy}: no finite score for module ${module} at step ${input.step} ` +
        `(got ${c}); the device must report c_i for every module it trained since the last event`,
    );
  }
  return c;
}

/** Fisher–Yates shuffle of a copy, driven by `rng`. */
export function shuffle<T>(items: readonly T[], rng: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(rng() * (i + 1)));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** `modules` ranked by score, highest first; ties keep module order. */
export function rankByScore(
  modules: readonly string[],
  score: (m: string) => number,
): string[] {
  return modules
    .map((m, i) => ({ m, i, c: score(m) }))
    .sort((a, b) => b.c - a.c || a.i - b.i)
    .map((e) => e.m);
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 === 1 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Killed modules, longest-killed first; equal kill steps in random order. */
export function longestKilledFirst(
  killed: readonly string[],
  killedSince: Record<string, number>,
  rng: () => number,
): string[] {
  return shuffle(killed, rng)
    .map((m, i) => ({ m, i, since: killedSince[m] ?? 0 }))
    .sort((a, b) => a.since - b.since || a.i - b.i)
    .map((e) => e.m);
}

/**
 * Which of the `candidates` (all scored) stay under `budget`: the top by score that fit the
 * fraction budget (`fillBudget`), or in
 * threshold mode those with c ≥ τ·median(c of `reference`) — never fewer than one.
 */
export function selectByBudget(
  input: DecisionInput,
  candidates: readonly string[],
  reference: readonly string[],
  policy: string,
): Set<string> {
  const score = (m: string) => scoreOf(input, m, policy);
  const ranked = rankByScore(candidates, score);
  if ("rho" in input.budget) return new Set(fillBudget(input, input.budget, ranked));
  const tau = input.budget.tau;
  if (!(tau >= 0)) throw new Error(`${policy}: threshold τ must be ≥ 0, got ${tau}`);
  const ref = reference.length > 0 ? reference : candidates;
  const cut = tau * median(ref.map(score));
  const keep = new Set(ranked.filter((m) => score(m) >= cut));
  if (keep.size === 0 && ranked.length > 0) keep.add(ranked[0]);
  return keep;
}

/** The keep count recorded in the history (null in threshold mode and with a cost budget). */
export function keepOf(budget: Budget, n: number): number | null {
  return "rho" in budget && budget.over !== "cost" ? budgetCount(budget.rho, n) : null;
}

/** The cost of `m` from `input.costs`; missing or non-positive is an error. */
export function costOf(input: DecisionInput, m: string): number {
  const c = input.costs?.get(m);
  if (c === undefined || !(c > 0 && Number.isFinite(c))) {
    throw new Error(
      `module selection: a cost budget needs a positive cost for every module; ${m} has ${c} ` +
        `(pass costs, e.g. r·(in+out) per module, or use a count budget)`,
    );
  }
  return c;
}

/** Summed cost of `modules`. */
export function totalCost(input: DecisionInput, modules: readonly string[]): number {
  return modules.reduce((s, m) => s + costOf(input, m), 0);
}

/**
 * Greedy fill of a fraction budget: walks `ranked` in order and takes each module that still fits
 * next to `taken` (already kept): up to ⌈ρ·N⌉ modules in all by count; by cost, every module
 * whose cost still fits under ρ·Σcost(all modules) (a costly one that does not fit is skipped and
 * cheaper ones after it may still fit). When nothing is taken yet, the first of `ranked` always
 * is (a device never trains nothing).
 */
export function fillBudget(
  input: DecisionInput,
  budget: { rho: number; over?: "count" | "cost" },
  ranked: readonly string[],
  taken: readonly string[] = [],
): string[] {
  const n = input.modules.length;
  if (budget.over !== "cost") {
    return ranked.slice(0, Math.max(0, budgetCount(budget.rho, n) - taken.length));
  }
  budgetCount(budget.rho, n); // validates ρ
  const cap = budget.rho * totalCost(input, input.modules) * (1 + 1e-9);
  let used = totalCost(input, taken);
  const out: string[] = [];
  for (const m of ranked) {
    const c = costOf(input, m);
    if (used + c <= cap || (out.length === 0 && taken.length === 0)) {
      out.push(m);
      used += c;
    }
  }
  return out;
}

/** Whether `kept` exceeds a fraction budget (more than ⌈ρ·N⌉ modules, or more than ρ·Σcost). */
export function overBudget(
  input: DecisionInput,
  budget: { rho: number; over?: "count" | "cost" },
  kept: readonly string[],
): boolean {
  if (budget.over !== "cost") return kept.length > budgetCount(budget.rho, input.modules.length);
  return kept.length > 1 &&
    totalCost(input, kept) > budget.rho * totalCost(input, input.modules) * (1 + 1e-9);
}
