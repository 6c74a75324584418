/**
 * report.md of the Kill-and-Revive experiment: the job, a table per task (policy × budget, means
 * over seeds, savings against `all`), and issue 5's targets as met / not met with the measured
 * values. Pure: rows and metadata in, Markdown out.
 */
import { type Group, groupRows, policyLabel, type Row, type TargetResult } from "./aggregate.ts";
import type { ExperimentShape } from "./grid.ts";
import { selectionFromOptions } from "../../coordinator/scheduler/options.ts";

export interface ReportMeta {
  command: string;
  shape: ExperimentShape;
  tasks: readonly { name: string; label: string }[];
  targets: TargetResult[];
  /** The same targets judged on the runs with rank reallocation (when the grid has them). */
  rankTargets?: TargetResult[];
  /** Per task: tokens trained on and held out (after the cap). */
  data?: Record<string, { trainTokens: number; heldOutTokens: number }>;
  wallSeconds?: number;
  date?: string;
  /** Fractions of the steps `all` also ran for (its equal-FLOPs curve). */
  allFractions?: readonly number[];
}

const f = (x: number, d = 4) => (Number.isFinite(x) ? x.toFixed(d) : "–");
const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : "–");
const signedPct = (x: number) =>
  Number.isFinite(x) ? `${x >= 0 ? "+" : ""}${(100 * x).toFixed(2)}%` : "–";
const giga = (x: number) => (Number.isFinite(x) ? (x / 1e9).toFixed(2) : "–");
const mega = (x: number) => (Number.isFinite(x) ? (x / 1e6).toFixed(1) : "–");

const POLICY_ORDER = ["all", "kr", "random", "oneshot"];

function order(a: Group, b: Group): number {
  return (a.rank ? 1 : 0) - (b.rank ? 1 : 0) ||
    POLICY_ORDER.indexOf(a.policy) - POLICY_ORDER.indexOf(b.policy) ||
    (b.budget ?? 2) - (a.budget ?? 2) || (a.score ?? "").localeCompare(b.score ?? "") ||
    (a.codec === "f32" ? 0 : 1) - (b.codec === "f32" ? 0 : 1) || b.steps - a.steps;
}

export function taskTable(rows: readonly Row[], task: string): string {
  const groups = groupRows(rows).filter((g) => g.task === task).sort(order);
  const head = [
    "policy",
    "score",
    "ρ",
    "codec",
    "steps",
    "seeds",
    "NLL active",
    "NLL all",
    "NLL vs all",
    "device GFLOP (total)",
    "LoRA GFLOP",
    "compute saved (total / LoRA)",
    "MB up",
    "MB down",
    "comm saved",
    "module-steps",
    "wall s",
  ];
  const lines = [
    `| ${head.join(" | ")} |`,
    `| ${head.map((_, i) => (i < 4 ? "---" : "---:")).join(" | ")} |`,
  ];
  for (const g of groups) {
    lines.push(
      `| ${
        [
          policyLabel(g),
          g.score ?? "–",
          g.budget ?? "–",
          g.codec,
          g.steps,
          g.seeds.length,
          f(g.nllActive),
          f(g.nllAll),
          signedPct(g.savings.nllGap),
          giga(g.deviceFlops),
          giga(g.loraFlops),
          `${pct(g.savings.computeTotal)} / ${pct(g.savings.computeLora)}`,
          mega(g.bytesUp),
          mega(g.bytesDown),
          pct(g.savings.comm),
          pct(g.moduleStepsFrac),
          f(g.wallSeconds, 1),
        ].join(" | ")
      } |`,
    );
  }
  return lines.join("\n");
}

/**
 * One line per configuration at the full length: each task's seed-mean NLL (active modules) and
 * the savings averaged over tasks — the table for the README.
 */
export function summaryTable(
  rows: readonly Row[],
  tasks: readonly { name: string; label: string }[],
): string {
  const shown = tasks.filter((t) => rows.some((r) => r.task === t.name));
  const full = new Map(
    shown.map((
      t,
    ) => [t.name, Math.max(...rows.filter((r) => r.task === t.name).map((r) => r.steps))]),
  );
  const groups = groupRows(rows).filter((g) => full.get(g.task) === g.steps);
  const key = (g: Group) => `${policyLabel(g)}/${g.score ?? "–"}/${g.budget ?? "–"}/${g.codec}`;
  const configs = new Map<string, Group[]>();
  for (const g of [...groups].sort(order)) configs.set(key(g), [...(configs.get(key(g)) ?? []), g]);
  const head = [
    "policy",
    "score",
    "ρ",
    "codec",
    ...shown.map((t) => `NLL ${t.name}`),
    "compute saved (total / LoRA)",
    "comm saved",
  ];
  const lines = [
    `| ${head.join(" | ")} |`,
    `| ${head.map((_, i) => (i < 4 ? "---" : "---:")).join(" | ")} |`,
  ];
  const avg = (gs: Group[], f: (g: Group) => number) => {
    const xs = gs.map(f).filter((x) => Number.isFinite(x));
    return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  for (const gs of configs.values()) {
    const g0 = gs[0];
    lines.push(`| ${
      [
        policyLabel(g0),
        g0.score ?? "–",
        g0.budget ?? "–",
        g0.codec,
        ...shown.map((t) => {
          const g = gs.find((x) => x.task === t.name);
          return g ? f(g.nllActive, 3) : "–";
        }),
        `${pct(avg(gs, (g) => g.savings.computeTotal))} / ${
          pct(avg(gs, (g) => g.savings.computeLora))
        }`,
        pct(avg(gs, (g) => g.savings.comm)),
      ].join(" | ")
    } |`);
  }
  return lines.join("\n");
}

export function targetsSection(targets: readonly TargetResult[]): string {
  const mark = (
    m: boolean | null,
  ) => (m === true ? "**met**" : m === false ? "**not met**" : "n/a");
  return [
    "| target | result | measured (seed means) |",
    "| --- | --- | --- |",
    ...targets.map((t) => `| ${t.name} | ${mark(t.met)} | ${t.value.replaceAll("|", "\\|")} |`),
  ].join("\n");
}

export function renderReport(rows: readonly Row[], meta: ReportMeta): string {
  const s = meta.shape;
  const out: string[] = [
    "# Kill and Revive: held-out NLL, device compute and communication",
    "",
    `Command: \`${meta.command}\`${meta.date ? ` (${meta.date})` : ""}. ${rows.length} runs, ` +
    `${(rows.reduce((a, r) => a + r.wall_s, 0) / 60).toFixed(1)} min of run time in all` +
    (meta.wallSeconds !== undefined
      ? ` (${(meta.wallSeconds / 60).toFixed(1)} min wall for this invocation).`
      : "."),
    "",
    `Job: ${s.model}, LoRA rank ${s.rank} (alpha ${s.alpha}) on ${s.targets.join(",")}, ` +
    `lr ${s.lr}, batch ${s.batch} × seq ${s.seqLen}, ${s.steps} steps; ${scheduleText(s)}; ` +
    `default score \`${s.defaultScore}\`. One device per run, ` +
    `coordinator and device in one process over an in-memory transport that carries the real ` +
    `frames, so bytes are frame bytes.`,
    "",
    `Data: each task's text (first ${s.maxChars.toLocaleString("en-US")} characters) is split ` +
    `on the device into train and held-out parts, the held-out part being its last ` +
    `${s.heldOut * 100}%; held-out NLL (DLORA.md §7, windows of ${s.evalSeqLen}) is measured on ` +
    `at most the first ${s.evalTokens.toLocaleString("en-US")} tokens of it, for speed.`,
  ];
  if (meta.data) {
    out.push(
      "",
      Object.entries(meta.data).map(([t, d]) =>
        `${t}: ${d.trainTokens.toLocaleString("en-US")} train tokens, ` +
        `${d.heldOutTokens.toLocaleString("en-US")} held-out tokens evaluated`
      ).join("; ") + ".",
    );
  }
  out.push(
    "",
    "How to read: *NLL active* is the held-out NLL with the modules active at the end (what the " +
      "device exports by default), *NLL all* with every module's weights applied. Savings are " +
      "against `all` of the same task and seed with the same steps in f32, averaged over seeds. " +
      "*Device GFLOP (total)* is everything the device computed (LoRA forward and backward, " +
      "optimizer, embedding, final norm, head and loss); *LoRA GFLOP* is the LoRA forward, " +
      "backward and optimizer only, the part module selection can save. *module-steps* is the " +
      "fraction of module × step pairs that trained (active or probing).",
    "",
    `Equal device FLOPs: \`all\` also runs ${
      (meta.allFractions ?? []).map((x) => `${x * 100}%`).join(", ") || "(none)"
    } of the steps, each a complete shorter run ` +
      "with its own learning-rate schedule (not a mid-run checkpoint, whose learning rate has " +
      "not decayed and which would flatter KR). All's held-out NLL at KR's FLOPs is " +
      "interpolated linearly between those runs of the same seed; a KR run whose FLOPs fall " +
      "outside that range is left out (no extrapolation).",
    "",
    "## Targets",
    "",
    targetsSection(meta.targets),
    "",
    ...(meta.rankTargets
      ? [
        "",
        '## Targets with rank reallocation (`kr.rank_scale: "budget"`)',
        "",
        'The same targets for the runs marked *+rank* (`kr.rank_scale: "budget"`): at each ' +
        "decision after the warm-up the kept modules grow from the job's rank to the largest " +
        "rank at which they hold no more LoRA parameters than `all` (r · Σ_all (in+out) / " +
        "Σ_kept (in+out), each capped at min(in, out); A gets new rows and B zero columns, so " +
        "the model is unchanged at the moment of growth). The parameters the killed modules " +
        "free go to the modules that matter: the device's LoRA compute comes back to about " +
        "`all`'s while its traffic stays that of ρ. `random` has no such runs; `oneshot` has.",
        "",
        targetsSection(meta.rankTargets),
      ]
      : []),
    "",
    "## Summary (means over seeds; savings averaged over tasks)",
    "",
    summaryTable(rows, meta.tasks),
  );
  for (const t of meta.tasks) {
    if (!rows.some((r) => r.task === t.name)) continue;
    out.push("", `## ${t.label} (\`${t.name}\`)`, "", taskTable(rows, t.name));
  }
  out.push("", "![held-out NLL vs device FLOPs](nll_vs_flops.svg)", "");
  return out.join("\n");
}

/**
 * The KR schedule the runs used, in words: the shape's values, else the product defaults
 * (KR_DEFAULTS) resolved for this run length (every task's data is longer than the default period).
 */
function scheduleText(s: ExperimentShape): string {
  const sel = selectionFromOptions({
    policy: "kr",
    warmup: s.warmup,
    period: s.period,
    probe: s.probe,
    ...(s.reviveFraction !== undefined ? { revive_fraction: s.reviveFraction } : {}),
    mode: "topk",
    tau: null,
    export: "active",
  }, { totalSteps: s.steps, stepsPerPass: Infinity });
  const c = sel.config;
  return `KR warm-up ${c.warmup} steps, period ${c.period}, probe window ${c.probeWindow}, ` +
    `revive fraction ${c.probeFraction}, trained modules' lr ×${sel.lrScale} after the warm-up` +
    (s.warmup === undefined && s.period === null ? " (the product defaults, KR_DEFAULTS)" : "");
}
