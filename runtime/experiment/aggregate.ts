/**
 * From the experiment's rows to means over seeds, savings against `all`, and issue 5's targets.
 * Pure functions of the rows (no I/O), so they are tested on synthetic rows.
 *
 * Conventions: a "reference" row is the `all` run of the same task and seed with the full number
 * of steps in f32; every saving is 1 − x/x_ref. KR's NLL is `nll_active` (the adapter a device
 * exports by default holds its active modules, KrOptions.export = "active"). The full step count
 * of a task is the largest `steps` among its rows; `all` rows with fewer steps are its equal-FLOPs
 * curve (a complete, shorter run each).
 */
import type { DeviceFlops } from "../device/flops.ts";
import type { ExperimentCodec, Policy } from "./grid.ts";

/** One run, as `--json` and rows.json print it (issue 5's fields, then extras). */
export interface Row {
  task: string;
  policy: Policy;
  score: string | null;
  budget: number | null;
  seed: number;
  steps: number;
  codec: ExperimentCodec;
  /** Rank reallocation ("budget": kept modules grown to all's parameter count); absent = the job's rank. */
  rank?: "budget";
  nll_active: number;
  nll_all: number;
  /** Everything the device computed (LoRA, optimizer, embedding, head and loss). */
  device_flops: number;
  bytes_up: number;
  bytes_down: number;
  module_steps_frac: number;
  wall_s: number;
  id?: string;
  /** LoRA forward + backward + optimizer: the part module selection can save. */
  device_flops_lora?: number;
  flops_by_kind?: DeviceFlops;
  bytes_up_by_type?: Record<string, number>;
  bytes_down_by_type?: Record<string, number>;
  [extra: string]: unknown;
}

export const mean = (xs: readonly number[]): number =>
  xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;

/** LoRA-only FLOPs of a row (falls back to the by-kind breakdown). */
export function loraFlops(r: Row): number {
  if (typeof r.device_flops_lora === "number") return r.device_flops_lora;
  const f = r.flops_by_kind;
  return f ? f.loraForward + f.loraBackward + f.optimizer : NaN;
}

export function fullSteps(rows: readonly Row[], task: string): number {
  return Math.max(...rows.filter((r) => r.task === task).map((r) => r.steps));
}

export function tasksOf(rows: readonly Row[]): string[] {
  return [...new Set(rows.map((r) => r.task))];
}

/** The `all` run every saving of `r` is measured against (null when it has not run). */
export function referenceOf(rows: readonly Row[], r: Row): Row | null {
  return rows.find((x) =>
    x.task === r.task && x.seed === r.seed && x.policy === "all" && x.codec === "f32" &&
    x.steps === r.steps
  ) ?? null;
}

/** A row's savings against its reference (fractions; NaN without a reference). */
export interface Savings {
  /** 1 − device FLOPs / all's, everything the device computed. */
  computeTotal: number;
  /** 1 − LoRA-only FLOPs / all's (LoRA forward, backward and optimizer). */
  computeLora: number;
  /** 1 − (bytes up + down) / all's. */
  comm: number;
  /** nll_active / all's nll − 1 (positive = worse than all). */
  nllGap: number;
}

export function savingsOf(rows: readonly Row[], r: Row): Savings {
  const ref = referenceOf(rows, r);
  if (!ref) return { computeTotal: NaN, computeLora: NaN, comm: NaN, nllGap: NaN };
  return {
    computeTotal: 1 - r.device_flops / ref.device_flops,
    computeLora: 1 - loraFlops(r) / loraFlops(ref),
    comm: 1 - (r.bytes_up + r.bytes_down) / (ref.bytes_up + ref.bytes_down),
    nllGap: r.nll_active / ref.nll_all - 1,
  };
}

/** Rows of one configuration (everything but the seed). */
export interface Group {
  task: string;
  policy: Policy;
  score: string | null;
  budget: number | null;
  steps: number;
  codec: ExperimentCodec;
  rank: "budget" | null;
  seeds: number[];
  nllActive: number;
  nllAll: number;
  deviceFlops: number;
  loraFlops: number;
  bytesUp: number;
  bytesDown: number;
  moduleStepsFrac: number;
  wallSeconds: number;
  /** Means over seeds of the per-seed savings (seeds without a reference are left out). */
  savings: Savings;
}

const groupKey = (r: Row) =>
  [r.task, r.policy, r.score ?? "-", r.budget ?? "-", r.steps, r.codec, r.rank ?? "-"].join("/");

/** How tables and the plot name a configuration's policy: "kr", "kr +rank". */
export function policyLabel(g: { policy: string; rank?: "budget" | null }): string {
  return g.rank ? `${g.policy} +rank` : g.policy;
}

/** Means over seeds, one group per configuration, in the order the rows first show them. */
export function groupRows(rows: readonly Row[]): Group[] {
  const byKey = new Map<string, Row[]>();
  for (const r of rows) {
    const k = groupKey(r);
    byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  return [...byKey.values()].map((rs) => {
    const s = rs.map((r) => savingsOf(rows, r));
    const m = (f: (x: Savings) => number) => mean(s.map(f).filter((x) => !Number.isNaN(x)));
    const r0 = rs[0];
    return {
      task: r0.task,
      policy: r0.policy,
      score: r0.score,
      budget: r0.budget,
      steps: r0.steps,
      codec: r0.codec,
      rank: r0.rank ?? null,
      seeds: rs.map((r) => r.seed),
      nllActive: mean(rs.map((r) => r.nll_active)),
      nllAll: mean(rs.map((r) => r.nll_all)),
      deviceFlops: mean(rs.map((r) => r.device_flops)),
      loraFlops: mean(rs.map(loraFlops)),
      bytesUp: mean(rs.map((r) => r.bytes_up)),
      bytesDown: mean(rs.map((r) => r.bytes_down)),
      moduleStepsFrac: mean(rs.map((r) => r.module_steps_frac)),
      wallSeconds: mean(rs.map((r) => r.wall_s)),
      savings: {
        computeTotal: m((x) => x.computeTotal),
        computeLora: m((x) => x.computeLora),
        comm: m((x) => x.comm),
        nllGap: m((x) => x.nllGap),
      },
    };
  });
}

/**
 * `all`'s held-out NLL at `flops` device FLOPs, for one task and seed: linear interpolation
 * between its runs of different lengths (each a complete run with its own schedule), ordered by
 * FLOPs. null when `flops` lies outside the measured range (no extrapolation).
 */
export function allNllAtFlops(
  rows: readonly Row[],
  task: string,
  seed: number,
  flops: number,
): number | null {
  const curve = rows
    .filter((r) => r.task === task && r.seed === seed && r.policy === "all" && r.codec === "f32")
    .map((r) => ({ x: r.device_flops, y: r.nll_all }))
    .sort((a, b) => a.x - b.x);
  if (curve.length === 0 || flops < curve[0].x || flops > curve[curve.length - 1].x) return null;
  for (let i = 0; i < curve.length; i++) {
    const a = curve[i], b = curve[i + 1];
    if (flops === a.x) return a.y;
    if (b && flops < b.x) return a.y + (b.y - a.y) * (flops - a.x) / (b.x - a.x);
  }
  return curve[curve.length - 1].y;
}

export interface TargetResult {
  name: string;
  /** true met, false not met, null not measurable from these rows (say why in `value`). */
  met: boolean | null;
  /** The measured figure(s), in words. */
  value: string;
}

export interface TargetOptions {
  /** Score of the default KR runs. */
  defaultScore: string;
  /** Judge the runs with rank reallocation instead of the job's rank (default: the job's). */
  rank?: "budget";
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Default-KR full-length f32 rows of a task at budget ρ (one per seed). */
function krRows(rows: readonly Row[], task: string, rho: number, o: TargetOptions, codec = "f32") {
  const full = fullSteps(rows, task);
  return rows.filter((r) =>
    r.task === task && r.policy === "kr" && r.score === o.defaultScore && r.budget === rho &&
    r.codec === codec && r.steps === full && r.rank === o.rank
  );
}

/** A "≥ goal" target judged on every task's seed mean; per-task values in the text. */
function perTaskTarget(
  rows: readonly Row[],
  name: string,
  pick: (task: string) => Row[],
  measure: (r: Row) => number,
  goal: number,
  higherIsBetter: boolean,
  fmt: (x: number) => string = pct,
): TargetResult {
  const parts: string[] = [];
  let met: boolean | null = true;
  let measured = 0;
  for (const task of tasksOf(rows)) {
    const vals = pick(task).map(measure).filter((x) => !Number.isNaN(x));
    if (vals.length === 0) {
      parts.push(`${task}: no runs`);
      continue;
    }
    measured++;
    const v = mean(vals);
    const ok = higherIsBetter ? v >= goal : v <= goal;
    if (!ok) met = false;
    parts.push(`${task}: ${fmt(v)} (${vals.length} seed${vals.length === 1 ? "" : "s"})`);
  }
  if (measured === 0) met = null;
  return { name, met, value: parts.join("; ") };
}

/** Issue 5's targets, each met / not met / not measurable, with the measured values. */
export function evaluateTargets(rows: readonly Row[], o: TargetOptions): TargetResult[] {
  const s = (r: Row) => savingsOf(rows, r);
  const out: TargetResult[] = [];
  const at = (rho: number, codec = "f32") => (task: string) => krRows(rows, task, rho, o, codec);
  out.push(perTaskTarget(
    rows,
    "ρ=0.125: device compute reduction ≥ 82% (total device FLOPs: LoRA, optimizer, embedding, " +
      "head and loss)",
    at(0.125),
    (r) => s(r).computeTotal,
    0.82,
    true,
  ));
  out.push(perTaskTarget(
    rows,
    "ρ=0.125: device compute reduction ≥ 82% (LoRA-only FLOPs: LoRA forward, backward, optimizer)",
    at(0.125),
    (r) => s(r).computeLora,
    0.82,
    true,
  ));
  out.push(perTaskTarget(
    rows,
    "ρ=0.125: communication reduction ≥ 87.5% (bytes up + down, f32 vs all in f32)",
    at(0.125),
    (r) => s(r).comm,
    0.875,
    true,
  ));
  out.push(perTaskTarget(
    rows,
    "ρ=0.125: communication reduction ≥ 95% with bf16 transport vs all in f32",
    at(0.125, "bf16"),
    (r) => s(r).comm,
    0.95,
    true,
  ));
  for (const [rho, goal] of [[0.25, 0.03], [0.125, 0.05]]) {
    out.push(perTaskTarget(
      rows,
      `ρ=${rho}: held-out NLL (active modules) within ${goal * 100}% of all's, same steps`,
      at(rho),
      (r) => s(r).nllGap,
      goal,
      false,
      (x) => `${x >= 0 ? "+" : ""}${pct(x)}`,
    ));
  }
  out.push(equalFlopsTarget(rows, o));
  out.push(beatsBaselinesTarget(rows, o));
  return out;
}

/**
 * At equal device FLOPs: each default-KR run (full length, f32, every budget) against `all` of
 * the same task and seed interpolated at KR's FLOPs; judged on the seed means per task and budget.
 */
export function equalFlopsTarget(rows: readonly Row[], o: TargetOptions): TargetResult {
  const name = "equal device FLOPs: KR's held-out NLL ≤ all's (all's NLL interpolated between " +
    "its complete runs of different lengths)";
  const parts: string[] = [];
  let met: boolean | null = true, measured = 0;
  for (const task of tasksOf(rows)) {
    const full = fullSteps(rows, task);
    const krs = rows.filter((r) =>
      r.task === task && r.policy === "kr" && r.score === o.defaultScore && r.codec === "f32" &&
      r.steps === full && r.rank === o.rank
    );
    for (const rho of new Set(krs.map((r) => r.budget))) {
      const pairs = krs.filter((r) => r.budget === rho).map((r) => ({
        kr: r.nll_active,
        all: allNllAtFlops(rows, task, r.seed, r.device_flops),
      }));
      const ok = pairs.filter((p): p is { kr: number; all: number } => p.all !== null);
      if (ok.length === 0) {
        parts.push(`${task} ρ=${rho}: KR's FLOPs outside all's measured range`);
        continue;
      }
      measured++;
      const k = mean(ok.map((p) => p.kr)), a = mean(ok.map((p) => p.all));
      if (!(k <= a)) met = false;
      parts.push(`${task} ρ=${rho}: KR ${k.toFixed(4)} vs all ${a.toFixed(4)}`);
    }
  }
  if (measured === 0) met = null;
  return { name, met, value: parts.join("; ") || "no KR runs" };
}

/**
 * The default policy and score against random and oneshot: a task counts when KR's seed-mean
 * NLL (active modules) is below both baselines' at every budget both ran at; met on ≥ 2 tasks
 * (or on every task when fewer than 3 ran).
 */
export function beatsBaselinesTarget(rows: readonly Row[], o: TargetOptions): TargetResult {
  const name = "default KR beats random and oneshot at the same budget (mean over seeds) on ≥ 2 " +
    "of 3 tasks";
  const groups = groupRows(rows).filter((g) => g.codec === "f32" && g.rank === (o.rank ?? null));
  const parts: string[] = [];
  let wins = 0, judged = 0;
  for (const task of tasksOf(rows)) {
    const full = fullSteps(rows, task);
    const g = groups.filter((x) => x.task === task && x.steps === full);
    const krs = g.filter((x) => x.policy === "kr" && x.score === o.defaultScore);
    let taskWins = true, compared = 0;
    const detail: string[] = [];
    for (const k of krs) {
      for (const base of ["random", "oneshot"] as const) {
        const b = g.find((x) => x.policy === base && x.budget === k.budget);
        if (!b) continue;
        compared++;
        const win = k.nllActive < b.nllActive;
        if (!win) taskWins = false;
        detail.push(
          `ρ=${k.budget} ${base} ${b.nllActive.toFixed(4)} ${win ? ">" : "≤"} KR ${
            k.nllActive.toFixed(4)
          }`,
        );
      }
    }
    if (compared === 0) continue;
    judged++;
    if (taskWins) wins++;
    parts.push(`${task}: ${taskWins ? "beats both" : "does not"} (${detail.join(", ")})`);
  }
  if (judged === 0) return { name, met: null, value: "no KR and baseline runs at a shared budget" };
  const need = Math.min(2, judged);
  return {
    name,
    met: wins >= need,
    value: `${wins} of ${judged} task${judged === 1 ? "" : "s"} (need ${need}); ${
      parts.join("; ")
    }`,
  };
}
