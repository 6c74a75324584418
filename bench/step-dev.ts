/**
 * Quick training-step benchmark of the engine (runtime/model): forward + backward + AdamW with
 * LoRA rank 8 on all seven projections, for stories260K at batch 8×256 and SmolLM-135M shapes
 * (synthetic weights) at 1×256. Prints tokens/s and where a step's time goes.
 *
 *   deno run -A bench/step-dev.ts [--model stories260k|smollm-135m|all] [--threads 2]
 *     [--steps N] [--fuse] [--no-profile] [--json]
 *
 * --fuse concatenates wq|wk|wv and gate|up into one GEMM each (off by default: no faster here).
 * The shapes, LoRA/AdamW settings and timing loop are runtime/train/throughput.ts, shared with
 * `deno task dlora bench step` (which adds one process per configuration and peak RSS).
 */
import { Kernels } from "../kernels/mod.ts";
import { loadModel } from "../runtime/load.ts";
import { LlamaModel } from "../runtime/model/llama.ts";
import { LocalLora } from "../runtime/model/lora.ts";
import { StepProfile } from "../runtime/model/profile.ts";
import {
  BENCH_ADAMW,
  BENCH_LORA,
  benchBatch,
  STEP_CASES,
  timeTrainSteps,
} from "../runtime/train/throughput.ts";

const args = Deno.args;
const flag = (name: string) => args.includes(name);
const value = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};

const which = value("--model", "all").toLowerCase();
const threads = Number(value("--threads", "2"));
const k = await Kernels.load({ threads });
const results = [];
for (const c of STEP_CASES) {
  if (which !== "all" && which !== c.name.toLowerCase()) continue;
  const steps = Number(value("--steps", String(c.steps)));
  const w = (await loadModel(c.model)).weights;
  const model = new LlamaModel(k, w, { fuse: flag("--fuse") });
  const lora = new LocalLora(k, w.config, BENCH_LORA);
  const batch = benchBatch(w.config, c.batch, c.seqLen), M = c.batch * c.seqLen;
  const opt = BENCH_ADAMW;
  const timing = await timeTrainSteps(model, lora, batch, { steps, warmup: 1, optimizer: opt });
  let breakdown = "";
  if (!flag("--no-profile")) {
    const profile = new StepProfile();
    model.setProfile(profile);
    const profSteps = Math.max(1, Math.min(steps, 3));
    for (let s = 0; s < profSteps; s++) await model.trainStep(batch, lora, opt);
    breakdown = profile.format(profSteps);
    model.setProfile(undefined);
  }
  const median = timing.medianMs, best = timing.bestMs;
  const r = {
    model: c.name,
    batch: `${c.batch}x${c.seqLen}`,
    threads: k.threads,
    variant: k.variant,
    fused: model.blocks.fused,
    median_ms: +median.toFixed(1),
    best_ms: +best.toFixed(1),
    tokens_per_s_median: Math.round(M / (median / 1000)),
    tokens_per_s_best: Math.round(M / (best / 1000)),
  };
  results.push(r);
  if (!flag("--json")) {
    console.log(
      `${c.name} ${r.batch} threads=${r.threads} (${r.variant}, fused=${r.fused}): ` +
        `median ${r.median_ms} ms/step = ${r.tokens_per_s_median} tok/s, best ${r.best_ms} ms = ` +
        `${r.tokens_per_s_best} tok/s`,
    );
    if (breakdown) console.log(breakdown + "\n");
  }
  model.free();
  lora.free();
}
k.close();
if (flag("--json")) console.log(JSON.stringify({ results }));
