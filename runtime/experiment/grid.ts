/**
 * The Kill-and-Revive experiment's grid (issue 5, "Experiment"): which runs there are and the job
 * shape they share. Every hyperparameter lives in `EXPERIMENT_JOB` so tuning it is a one-line
 * change; the grid builders only combine tasks × policies × budgets × seeds.
 */
import { KR_DEFAULTS, type KrOptions } from "../../coordinator/scheduler/options.ts";
import type { DataSource } from "../demo/data.ts";
import { type ScoreName, SCORES } from "../device/scores.ts";
import { type Proj, PROJS } from "../model/modules.ts";

export type Policy = "all" | "kr" | "random" | "oneshot";
export type ExperimentCodec = "f32" | "bf16";

/**
 * The job every run shares. The Kill-and-Revive schedule is the product's default
 * (KR_DEFAULTS in coordinator/scheduler/options.ts, measured with bench/kr-sim-dev.ts): warm-up
 * 5% of the run, period min(one pass, 20% of the run), probes of ⅛ period for q = 0.1 of the
 * killed modules, the trained modules' lr doubled after the warm-up. `undefined`/null here take
 * those defaults; a number overrides them. lr 6e-3 is the best of the harness's sweep for `all`.
 */
export const EXPERIMENT_JOB = {
  model: "stories260K",
  rank: 8,
  alpha: 16,
  lr: 6e-3,
  batch: 4,
  seqLen: 128,
  steps: 200,
  targets: [...PROJS] as Proj[],
  /** KrOptions.warmup: steps with every module active before the first decision. */
  warmup: undefined as number | undefined,
  /** KrOptions.period: steps between decisions (null: the default). */
  period: null as number | null,
  /** KrOptions.probe: steps a revived module is probed before it is ranked again. */
  probe: null as number | null,
  /** KrOptions.revive_fraction (q); undefined: the default. */
  reviveFraction: undefined as number | undefined,
  /** The score of the "default" KR runs (and of oneshot's one prune). */
  defaultScore: KR_DEFAULTS.score as ScoreName,
  /** Held-out part of each device's text: its last 10%, as DLORA.md §7. */
  heldOut: 0.1,
  /** Held-out tokens evaluated per run (a cap for speed; BOS included). */
  evalTokens: 20_000,
  /** Windows of the held-out NLL (§7). */
  evalSeqLen: 256,
  /** Characters of a task's text read (from the start), before the split: bounds tokenizing. */
  maxChars: 400_000,
  /** Kernel threads per run (runs go in parallel instead). */
  threads: 1,
};

export type ExperimentShape = typeof EXPERIMENT_JOB;

export interface Task extends DataSource {
  /** What the report calls it. */
  label: string;
}

/** The three tasks: a device's private text each (paths under `datasets/`, via the resolver). */
export const TASKS: readonly Task[] = [
  { name: "tinyshakespeare", label: "TinyShakespeare LM", file: "tinyshakespeare.txt" },
  { name: "austen", label: "Austen LM", file: "austen/prideprejudice.txt" },
  { name: "sst2", label: "SST-2 sentences", file: "sst2/train.tsv", lines: 12_000 },
];

export function taskByName(name: string): Task {
  const t = TASKS.find((t) => t.name === name);
  if (!t) {
    throw new Error(`unknown task "${name}"; choose from ${TASKS.map((t) => t.name).join(", ")}`);
  }
  return t;
}

/** One run of the grid. */
export interface RunSpec {
  task: string;
  policy: Policy;
  /** The score KR ranks by (kr, oneshot); null when no score is used (all, random). */
  score: ScoreName | null;
  /** ρ; null for `all`. */
  budget: number | null;
  seed: number;
  steps: number;
  codec: ExperimentCodec;
  /**
   * Rank reallocation (`kr.rank_scale`): "budget" = after the warm-up the kept modules grow to
   * the rank at which they hold as many LoRA parameters as `all`; absent = the job's rank.
   */
  rank?: "budget";
}

/** A stable key: two specs are the same run exactly when their ids match. */
export function runId(s: RunSpec): string {
  const id = [s.task, s.policy, s.score ?? "-", s.budget ?? "-", `s${s.seed}`, `n${s.steps}`];
  return [...id, s.codec, ...(s.rank ? [`rank-${s.rank}`] : [])].join("/");
}

/** The job's `kr` options for a spec (null for `all`: no selection at all). */
export function krOptions(s: RunSpec, shape: ExperimentShape): KrOptions | null {
  if (s.policy === "all") return null;
  if (s.budget === null) throw new Error(`run ${runId(s)}: policy ${s.policy} needs a budget ρ`);
  return {
    policy: s.policy,
    warmup: shape.warmup,
    period: shape.period,
    probe: shape.probe,
    ...(shape.reviveFraction !== undefined ? { revive_fraction: shape.reviveFraction } : {}),
    mode: "topk",
    tau: null,
    export: "active",
    score: s.score ?? shape.defaultScore,
    budget: s.budget,
    ...(s.rank ? { rank_scale: s.rank } : {}),
  };
}

export interface GridOptions {
  tasks: readonly string[];
  seeds: readonly number[];
  budgets: readonly number[];
  /** KR scores to run (each at every budget). */
  scores: readonly ScoreName[];
  /** Baselines at every budget. */
  baselines: readonly ("random" | "oneshot")[];
  steps: number;
  /** Budgets at which the default KR also runs with bf16 transport. */
  bf16Budgets: readonly number[];
  /**
   * Budgets at which the default KR and oneshot also run with rank reallocation (the kept
   * modules grow until they hold as many LoRA parameters as `all`).
   */
  rankBudgets: readonly number[];
  /**
   * `all` also runs for these fractions of the steps (its own complete, shorter schedule): the
   * curve KR is compared against at equal device FLOPs.
   */
  allFractions: readonly number[];
  defaultScore: ScoreName;
}

/** Issue 5's grid: 3 tasks × (all, kr × 3 scores, random, oneshot) × ρ 0.5/0.25/0.125 × 3 seeds. */
export function fullGridOptions(shape: ExperimentShape = EXPERIMENT_JOB): GridOptions {
  return {
    tasks: TASKS.map((t) => t.name),
    seeds: [1, 2, 3],
    budgets: [0.5, 0.25, 0.125],
    scores: [...SCORES],
    baselines: ["random", "oneshot"],
    steps: shape.steps,
    bf16Budgets: [0.125],
    rankBudgets: [0.5, 0.25, 0.125],
    allFractions: [0.25, 0.5, 0.75],
    defaultScore: shape.defaultScore,
  };
}

/**
 * `--quick`: one task, one seed, the smallest budget (so most targets are measurable) with the
 * default score, the baselines and bf16, and `all` at two shorter lengths.
 */
export function quickGridOptions(shape: ExperimentShape): GridOptions {
  return {
    tasks: [TASKS[0].name],
    seeds: [1],
    budgets: [0.125],
    scores: [shape.defaultScore],
    baselines: ["random", "oneshot"],
    steps: shape.steps,
    bf16Budgets: [0.125],
    rankBudgets: [0.125],
    allFractions: [0.25, 0.5],
    defaultScore: shape.defaultScore,
  };
}

/** The smaller job `--quick` runs: fewer steps, shorter sequences, a smaller held-out slice. */
export function quickShape(shape: ExperimentShape = EXPERIMENT_JOB): ExperimentShape {
  return {
    ...shape,
    steps: 30,
    seqLen: 64,
    warmup: 5,
    period: 8,
    probe: 4,
    evalTokens: 4096,
    evalSeqLen: 128,
    maxChars: 100_000,
  };
}

/**
 * Every run, seed by seed (so a stopped grid has every task for its first seeds), `all` first in
 * each task (its rows are what the others are compared against).
 */
export function buildGrid(g: GridOptions): RunSpec[] {
  const runs: RunSpec[] = [];
  for (const seed of g.seeds) {
    for (const task of g.tasks) {
      const base = { task, seed, steps: g.steps, codec: "f32" as const };
      runs.push({ ...base, policy: "all", score: null, budget: null });
      for (const f of g.allFractions) {
        const steps = Math.round(f * g.steps);
        if (steps >= 1 && steps < g.steps) {
          runs.push({ ...base, steps, policy: "all", score: null, budget: null });
        }
      }
      for (const budget of g.budgets) {
        for (const score of g.scores) runs.push({ ...base, policy: "kr", score, budget });
        for (const p of g.baselines) {
          runs.push({
            ...base,
            policy: p,
            score: p === "oneshot" ? g.defaultScore : null,
            budget,
          });
        }
      }
      for (const budget of g.bf16Budgets) {
        runs.push({ ...base, codec: "bf16", policy: "kr", score: g.defaultScore, budget });
      }
      for (const budget of g.rankBudgets) {
        for (const policy of ["kr", "oneshot"] as const) {
          runs.push({ ...base, policy, score: g.defaultScore, budget, rank: "budget" });
        }
      }
    }
  }
  const seen = new Set<string>();
  return runs.filter((r) => {
    const id = runId(r);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
