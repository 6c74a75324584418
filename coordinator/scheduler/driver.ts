/**
 * Drives a module-selection policy for one device session (DLORA.md §3, issue 5): the loop
 * around the pure policies, platform-free. It tells the device when to report (SELECT's
 * `reportAt`: the next event of `scheduleAt`), checks the SCORES the device sends, and at each
 * event runs the policy under the budget of the device's tier at that moment, advancing the
 * scheduler state. The session applies `trained()` as its active modules and sends the SELECT.
 *
 * Randomness comes only from a mulberry32 stream seeded by the job seed and the device id, so
 * a run is reproducible. Nothing here touches the wire: the session encodes the messages.
 */
import type { ScoresMessage, SelectMessage } from "../../runtime/protocol/control.ts";
import { mulberry32 } from "../../runtime/model/lora.ts";
import { type KrOptions, type Selection, selectionFromOptions } from "./options.ts";
import {
  type Budget,
  budgetCount,
  initialState,
  keepOf,
  nextState,
  scheduleAt,
  type SchedulerState,
  type SelectionEventKind,
  trained,
} from "./policy.ts";

/** One move as the job's inspection and the device's accounting show it. */
export interface StepSelectionEvent {
  /** Optimizer steps completed when it was decided. */
  step: number;
  kind: SelectionEventKind;
  module: string;
  score?: number;
}

/** What a decision changed, for the step report. */
export interface SelectionOutcome {
  step: number;
  /** Modules trained from now on (active and probing), in module order. */
  active: string[];
  probing: string[];
  events: StepSelectionEvent[];
  budget: Budget | null;
  tier: string | null;
  /** The device did not report its scores in time: nothing was decided. */
  missedScores: boolean;
}

/** What a session needs to run selection (the job's `kr` and the facts the defaults need). */
export interface SelectionSpec {
  kr: KrOptions;
  totalSteps: number;
  /** Steps in one pass over the device's data (the default period). */
  stepsPerPass: number;
  /** The job seed; mixed with the device id for the rng. */
  seed: number;
  /** The device's tier and its ρ when the session opens (updated by `setTier`). */
  tier: string | null;
  tierRho: number;
  /** The job's LoRA rank (what `kr.rank_scale` multiplies); needed when it is not 1. */
  rank?: number;
}

/** FNV-1a of the device id mixed with the seed: the rng seed of one device's decisions. */
export function selectionSeed(seed: number, deviceId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < deviceId.length; i++) {
    h ^= deviceId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
}

export class SelectionDriver {
  readonly selection: Selection;
  readonly modules: readonly string[];
  readonly totalSteps: number;
  #state: SchedulerState;
  #rng: () => number;
  #tier: string | null;
  #tierRho: number;
  #reportAt: number | null = null;
  #scores: ScoresMessage | null = null;
  /** The job's LoRA rank (0 when unknown: no rank reallocation). */
  readonly #rank: number;
  readonly #events: StepSelectionEvent[] = [];

  /** Relative cost of each module, r·(in + out) (what a cost budget shares out). */
  readonly #costs: ReadonlyMap<string, number> | undefined;

  /**
   * `costs`: each module's r·(in + out) — its LoRA FLOPs, bytes and parameters per token are
   * proportional to it; needed when the job's budget is over cost (`kr.budget_over: "cost"`).
   */
  constructor(
    spec: SelectionSpec,
    modules: readonly string[],
    deviceId: string,
    costs?: ReadonlyMap<string, number>,
  ) {
    if (modules.length === 0) throw new Error("module selection: the job has no modules");
    this.#costs = costs;
    this.selection = selectionFromOptions(spec.kr, {
      totalSteps: spec.totalSteps,
      stepsPerPass: spec.stepsPerPass,
    });
    if (this.selection.rankScale !== 1 && !(spec.rank !== undefined && spec.rank >= 1)) {
      throw new Error("module selection: kr.rank_scale needs the job's LoRA rank");
    }
    if (this.selection.rankScale === "budget" && costs === undefined) {
      throw new Error('module selection: kr.rank_scale "budget" needs the modules\' costs');
    }
    this.#rank = spec.rank ?? 0;
    this.modules = [...modules];
    this.totalSteps = spec.totalSteps;
    this.#state = initialState(modules);
    this.#rng = mulberry32(selectionSeed(spec.seed, deviceId));
    this.#tier = spec.tier;
    this.#tierRho = spec.tierRho;
    this.#checkRho(spec.tierRho); // now, not at the first decision
  }

  get state(): SchedulerState {
    return this.#state;
  }

  /** Modules the device trains now (active and probing). */
  get trained(): string[] {
    return trained(this.#state);
  }

  /** Every kill/revive/probe/promote/drop so far, in order. */
  get events(): readonly StepSelectionEvent[] {
    return this.#events;
  }

  /** Steps completed at which the device reports next (null: never again). */
  get reportAt(): number | null {
    return this.#reportAt;
  }

  get tier(): { name: string | null; rho: number } {
    return { name: this.#tier, rho: this.#tierRho };
  }

  /** The operator re-tiered the device: the new budget applies from the next event on. */
  setTier(name: string | null, rho: number): void {
    this.#checkRho(rho);
    this.#tier = name;
    this.#tierRho = rho;
  }

  /** The SELECT that opens the session: every module active, report at the first event. */
  start(): SelectMessage {
    this.#reportAt = this.#nextEvent(0);
    return this.#message(0, { killed: [], revived: [], events: [] }, null);
  }

  /**
   * Why the device's SCORES cannot be taken (null when they can): they must come at the step
   * the last SELECT asked for, name the job's score, and cover exactly the modules trained
   * since the last event.
   */
  checkScores(m: ScoresMessage): string | null {
    if (this.#reportAt === null) {
      return `SCORES for step ${m.step}, but no report is due (the last SELECT said never)`;
    }
    if (m.step !== this.#reportAt) {
      return `SCORES for step ${m.step}, but the device must report at step ${this.#reportAt}`;
    }
    if (m.score !== this.selection.score) {
      return `SCORES are "${m.score}" values; this job ranks by "${this.selection.score}"`;
    }
    const want = new Set(this.trained);
    const got = Object.keys(m.values);
    const extra = got.filter((k) => !want.has(k));
    const missing = [...want].filter((k) => !(k in m.values));
    if (extra.length > 0 || missing.length > 0) {
      const list = (xs: string[]) => xs.slice(0, 8).join(", ") + (xs.length > 8 ? ", …" : "");
      return "SCORES must cover exactly the modules trained since the last report" +
        (extra.length ? `; not trained: ${list(extra)}` : "") +
        (missing.length ? `; missing: ${list(missing)}` : "");
    }
    return null;
  }

  /** Keeps SCORES that `checkScores` accepted until the step's end. */
  takeScores(m: ScoresMessage): void {
    const problem = this.checkScores(m);
    if (problem !== null) throw new Error(problem);
    this.#scores = m;
  }

  /**
   * The device finished `completed` steps. At the step it was told to report at, the policy
   * decides (or, without scores, nothing changes and the device is asked again at the next
   * event); returns the SELECT to send, or null when this step is no event.
   */
  stepEnded(completed: number): { select: SelectMessage; outcome: SelectionOutcome } | null {
    if (this.#reportAt === null || completed !== this.#reportAt) return null;
    const scores = this.#scores;
    this.#scores = null;
    const budget = this.selection.budget(this.#tierRho);
    let changes = { killed: [] as string[], revived: [] as string[] };
    let events: StepSelectionEvent[] = [];
    if (scores !== null) {
      const decision = this.selection.policy.decide({
        step: completed,
        totalSteps: this.totalSteps,
        modules: this.modules,
        scores: new Map(Object.entries(scores.values)),
        state: this.#state,
        budget,
        rng: this.#rng,
        config: this.selection.config,
        ...(this.#costs ? { costs: this.#costs } : {}),
      });
      this.#state = nextState(
        this.#state,
        decision,
        completed,
        keepOf(budget, this.modules.length),
      );
      events = decision.events.map((e) => ({ step: completed, ...e }));
      this.#events.push(...events);
      changes = { killed: decision.killed, revived: decision.revived };
    }
    this.#reportAt = this.#nextEvent(completed);
    const select = this.#message(completed, { ...changes, events }, budget);
    return {
      select,
      outcome: {
        step: completed,
        active: this.trained,
        probing: [...this.#state.probing],
        events,
        budget,
        tier: this.#tier,
        missedScores: scores === null,
      },
    };
  }

  #checkRho(rho: number): void {
    const b = this.selection.budget(rho);
    if ("rho" in b) budgetCount(b.rho, 1);
  }

  /** The first event after `completed` (a final-only step counts only while probes run). */
  #nextEvent(completed: number): number | null {
    for (let s = completed + 1; s <= this.totalSteps; s++) {
      const ev = scheduleAt(s, this.selection.config, this.totalSteps);
      if (ev.decision || ev.probeEnd) return s;
      if (ev.final && this.#state.probing.length > 0) return s;
    }
    return null;
  }

  #message(
    step: number,
    c: { killed: string[]; revived: string[]; events: StepSelectionEvent[] },
    budget: Budget | null,
  ): SelectMessage {
    const selecting = step >= this.selection.config.warmup && step > 0;
    const rank = selecting ? this.#keptRank() : null;
    return {
      step,
      active: [...this.#state.active],
      probing: [...this.#state.probing],
      killed: [...c.killed],
      revived: [...c.revived],
      events: c.events.map((e) => ({
        kind: e.kind,
        module: e.module,
        ...(e.score !== undefined ? { score: e.score } : {}),
      })),
      budget,
      tier: this.#tier,
      reportAt: this.#reportAt,
      score: this.selection.score,
      // The modules trained after the warm-up carry the whole update: their lr is scaled.
      lr_scale: selecting ? this.selection.lrScale : 1,
      ...(rank !== null ? { rank } : {}),
    };
  }

  /**
   * The rank the kept modules grow to at a decision after the warm-up (null: no growth). With
   * "budget", the largest rank at which the active modules hold no more LoRA parameters than
   * every module at the job's rank: r · Σ_all (in+out) / Σ_active (in+out), rounded down.
   */
  #keptRank(): number | null {
    const scale = this.selection.rankScale;
    if (scale === 1) return null;
    let rank: number;
    if (scale === "budget") {
      const cost = (ms: Iterable<string>) => {
        let sum = 0;
        for (const m of ms) sum += this.#costs!.get(m) ?? 0;
        return sum;
      };
      const kept = cost(this.#state.active);
      rank = kept > 0 ? Math.floor((this.#rank * cost(this.modules)) / kept) : this.#rank;
    } else rank = Math.round(this.#rank * scale);
    return rank > this.#rank ? rank : null;
  }
}
