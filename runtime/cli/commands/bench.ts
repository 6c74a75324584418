/**
 * `dlora bench step [--quick] [--json]`: local LoRA training throughput (rank 8, alpha 16, all
 * seven projections, AdamW) for each configuration of runtime/train/throughput.ts at 1 and 2
 * threads. Each configuration runs in its own process (`bench step --model NAME --threads N`,
 * which measures just that one), so the peak RSS it reports (VmHWM) is that configuration's
 * alone. --quick: 1 warm-up and 2 timed steps, and a shorter sequence where a configuration names
 * one (SmolLM: 64 tokens; targets of a shortened shape are then not judged), to check that everything runs.
 */
import { Kernels } from "../../../kernels/mod.ts";
import { loadModel } from "../../load.ts";
import { LlamaModel } from "../../model/llama.ts";
import { LocalLora } from "../../model/lora.ts";
import {
  BENCH_LORA,
  benchBatch,
  STEP_CASES,
  type StepCase,
  timeTrainSteps,
} from "../../train/throughput.ts";
import { type Flags, optionalInt, UsageError } from "../args.ts";
import { benchLoad } from "./bench_load.ts";
import { benchSplit } from "./bench_split.ts";

export const benchFlags = {
  quick: "boolean",
  model: "string",
  threads: "number",
  steps: "number",
  seconds: "number",
  "micro-batch": "number",
} as const;

export interface BenchRow {
  model: string;
  batch: number;
  seq_len: number;
  threads: number;
  variant: string;
  tokens_per_s: number;
  tokens_per_s_best: number;
  median_ms: number;
  steps: number;
  /** Peak resident memory of the configuration's process (VmHWM), MiB; null off Linux. */
  peak_rss_mb: number | null;
}

export interface BenchTarget {
  target: string;
  model: string;
  metric: "tokens_per_s" | "peak_rss_mb";
  bound: "min" | "max";
  threshold: number;
  value: number | null;
  /** null when no row of the target's shape was measured (e.g. --quick). */
  met: boolean | null;
}

/** Issue 3's targets; the RSS ones hold for every thread count. */
const TARGETS: {
  model: string;
  threads?: number;
  metric: BenchTarget["metric"];
  bound: "min" | "max";
  threshold: number;
}[] = [
  { model: "stories260K", threads: 2, metric: "tokens_per_s", bound: "min", threshold: 7500 },
  { model: "smollm-135m", threads: 2, metric: "tokens_per_s", bound: "min", threshold: 40 },
  { model: "stories260K", metric: "peak_rss_mb", bound: "max", threshold: 200 },
  { model: "smollm-135m", metric: "peak_rss_mb", bound: "max", threshold: 2560 },
];

const THREADS = [1, 2];

export async function benchCommand(flags: Flags): Promise<Record<string, unknown>> {
  const what = flags.what;
  if (what === "kernels") {
    throw new UsageError("bench kernels: run `deno task bench:kernels [--json]` for now");
  }
  if (what === "split") {
    const threads = flags.threads === undefined
      ? undefined
      : optionalInt(flags, "threads", 1, "bench split");
    const steps = flags.steps === undefined
      ? undefined
      : optionalInt(flags, "steps", 5, "bench split");
    const microBatch = flags["micro-batch"] === undefined
      ? undefined
      : optionalInt(flags, "micro-batch", 4, "bench split");
    return await benchSplit({ quick: flags.quick === true, threads, steps, microBatch });
  }
  if (what === "load") {
    const seconds = flags.seconds === undefined
      ? undefined
      : optionalInt(flags, "seconds", 30, "bench load");
    return await benchLoad({ quick: flags.quick === true, seconds });
  }
  if (what !== "step") {
    throw new UsageError(
      `bench: say which benchmark: bench step|kernels|split|load${what ? ` (got "${what}")` : ""}`,
    );
  }
  const quick = flags.quick === true;
  if (typeof flags.model === "string") {
    const c = caseOf(flags.model, quick);
    const threads = optionalInt(flags, "threads", 1, "bench step");
    const steps = optionalInt(flags, "steps", c.steps, "bench step");
    return { ...(await measureCase({ ...c, steps }, threads)) };
  }
  const main = new URL("../main.ts", import.meta.url).pathname;
  const rows: BenchRow[] = [];
  for (const base of STEP_CASES) {
    for (const threads of THREADS) {
      const args = ["run", "-A", main, "bench", "step", "--model", base.name];
      args.push("--threads", String(threads), "--json", ...(quick ? ["--quick"] : []));
      if (flags.steps !== undefined) args.push("--steps", String(flags.steps));
      const out = await new Deno.Command(Deno.execPath(), {
        args,
        stdout: "piped",
        stderr: "piped",
      })
        .output();
      const stdout = new TextDecoder().decode(out.stdout).trim();
      if (out.code !== 0) {
        const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-5).join("\n");
        throw new Error(`bench step: ${base.name} at ${threads} threads failed:\n${err}`);
      }
      const row = JSON.parse(stdout.split("\n").at(-1)!) as BenchRow;
      rows.push(row);
      console.error(
        `bench step: ${row.model} ${row.batch}×${row.seq_len} threads=${row.threads}: ` +
          `${row.tokens_per_s} tokens/s (median of ${row.steps} steps, ${row.median_ms} ms), ` +
          `peak RSS ${row.peak_rss_mb ?? "?"} MiB`,
      );
    }
  }
  return { rows, targets: judge(rows), quick };
}

function caseOf(name: string, quick: boolean): StepCase {
  const c = STEP_CASES.find((c) =>
    c.name.toLowerCase() === name.toLowerCase() || c.model.toLowerCase() === name.toLowerCase()
  );
  if (!c) {
    throw new UsageError(
      `bench step: --model must be one of ${STEP_CASES.map((c) => c.name).join(", ")}`,
    );
  }
  if (!quick) return c;
  return { ...c, steps: 2, warmup: 1, seqLen: c.quickSeqLen ?? c.seqLen };
}

/** One configuration in this process: load, warm up, time, report with this process's peak RSS. */
async function measureCase(c: StepCase, threads: number): Promise<BenchRow> {
  const { weights } = await loadModel(c.model);
  const k = await Kernels.load({ threads });
  const model = new LlamaModel(k, weights);
  const lora = new LocalLora(k, weights.config, BENCH_LORA);
  try {
    const batch = benchBatch(weights.config, c.batch, c.seqLen);
    const t = await timeTrainSteps(model, lora, batch, { steps: c.steps, warmup: c.warmup });
    return {
      model: c.name,
      batch: c.batch,
      seq_len: c.seqLen,
      threads: k.threads,
      variant: k.variant,
      tokens_per_s: Math.round(t.tokensPerSecond),
      tokens_per_s_best: Math.round(t.tokensPerSecondBest),
      median_ms: +t.medianMs.toFixed(1),
      steps: t.steps,
      peak_rss_mb: peakRssMb(),
    };
  } finally {
    lora.free();
    model.free();
    k.close();
  }
}

/** VmHWM of this process in MiB, or null where /proc is not there. */
export function peakRssMb(): number | null {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** Each target against the rows of its model at the full shape (and thread count if named). */
export function judge(rows: readonly BenchRow[]): BenchTarget[] {
  return TARGETS.map((t) => {
    const shape = STEP_CASES.find((c) => c.name === t.model)!;
    const matching = rows.filter((r) =>
      r.model === t.model && r.batch === shape.batch && r.seq_len === shape.seqLen &&
      (t.threads === undefined || r.threads === t.threads)
    );
    const values = matching.map((r) => r[t.metric]).filter((v): v is number => v !== null);
    const value = values.length === 0
      ? null
      : t.bound === "min"
      ? Math.min(...values)
      : Math.max(...values);
    const unit = t.metric === "tokens_per_s" ? "tokens/s" : "MiB peak RSS";
    return {
      target: `${t.model} ${shape.batch}×${shape.seqLen}${
        t.threads ? ` at ${t.threads} threads` : ""
      }: ${t.bound === "min" ? "≥" : "≤"} ${t.threshold} ${unit}`,
      model: t.model,
      metric: t.metric,
      bound: t.bound,
      threshold: t.threshold,
      value,
      met: value === null ? null : t.bound === "min" ? value >= t.threshold : value <= t.threshold,
    };
  });
}
