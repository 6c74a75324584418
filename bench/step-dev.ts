/**
 * Quick training-step benchmark of the engine (runtime/model): forward + backward + AdamW with
 * LoRA rank 8 on all seven projections, for stories260K at batch 8×256 and SmolLM-135M shapes
 * (synthetic weights) at 1×256. Prints tokens/s and where a step's time goes.
 *
 *   deno run -A bench/step-dev.ts [--model stories260k|smollm-135m|all] [--threads 2]
 *     [--steps N] [--fuse] [--no-profile] [--json]
 *
 * --fuse concatenates wq|wk|wv and gate|up into one GEMM each (off by default: no faster here).
 */
import { Kernels } from "../kernels/mod.ts";
import { parseLlama2c } from "../runtime/formats/llama2c.ts";
import { syntheticWeights } from "../runtime/formats/synthetic.ts";
import { LlamaModel } from "../runtime/model/llama.ts";
import { LocalLora } from "../runtime/model/lora.ts";
import { StepProfile } from "../runtime/model/profile.ts";
import type { LlamaWeights } from "../runtime/model/weights.ts";

const args = Deno.args;
const flag = (name: string) => args.includes(name);
const value = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};

interface Case {
  name: string;
  load: () => LlamaWeights;
  B: number;
  T: number;
  steps: number;
}

const CASES: Case[] = [
  {
    name: "stories260k",
    load: () => {
      const url = new URL("../../shared/models/stories260K/stories260K.bin", import.meta.url);
      try {
        return parseLlama2c(Deno.readFileSync(url), "stories260K.bin");
      } catch {
        return syntheticWeights("stories260k");
      }
    },
    B: 8,
    T: 256,
    steps: 10,
  },
  { name: "smollm-135m", load: () => syntheticWeights("smollm-135m"), B: 1, T: 256, steps: 3 },
];

const which = value("--model", "all");
const threads = Number(value("--threads", "2"));
const k = await Kernels.load({ threads });
const results = [];
for (const c of CASES) {
  if (which !== "all" && which !== c.name) continue;
  const steps = Number(value("--steps", String(c.steps)));
  const w = c.load();
  const model = new LlamaModel(k, w, { fuse: flag("--fuse") });
  const lora = new LocalLora(k, w.config, { rank: 8, alpha: 16, seed: 1 });
  const M = c.B * c.T, V = w.config.vocabSize;
  const ids = Array.from({ length: M }, (_, i) => 3 + ((i * 7919) % (V - 3)));
  const targets = Array.from({ length: M }, (_, i) => 3 + ((i * 104729 + 13) % (V - 3)));
  const batch = { ids, targets, B: c.B, T: c.T };
  const opt = { lr: 1e-3, weightDecay: 0 };
  await model.trainStep(batch, lora, opt); // warm-up: workspaces, scratch, JIT
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    await model.trainStep(batch, lora, opt);
    times.push(performance.now() - t0);
  }
  let breakdown = "";
  if (!flag("--no-profile")) {
    const profile = new StepProfile();
    model.setProfile(profile);
    const profSteps = Math.max(1, Math.min(steps, 3));
    for (let s = 0; s < profSteps; s++) await model.trainStep(batch, lora, opt);
    breakdown = profile.format(profSteps);
    model.setProfile(undefined);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)], best = times[0];
  const r = {
    model: c.name,
    batch: `${c.B}x${c.T}`,
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
