/**
 * Training-step throughput of the engine, shared by `dlora bench step` and bench/step-dev.ts:
 * forward + backward + AdamW with LoRA rank 8 (alpha 16) on all seven projections over a fixed
 * batch, warm-up steps first (workspaces, scratch, JIT), then the median of several timed steps.
 */
import type { LlamaModel, TrainBatch, TrainStepOptions } from "../model/llama.ts";
import type { LocalLora } from "../model/lora.ts";
import type { LlamaConfig } from "../model/weights.ts";

/** One benchmark configuration (the model argument is resolved by runtime/load.ts). */
export interface StepCase {
  name: string;
  model: string;
  batch: number;
  seqLen: number;
  /** Timed steps, after `warmup` untimed ones. */
  steps: number;
  warmup: number;
  /** Sequence length for a quick smoke run (`bench step --quick`), when shorter. */
  quickSeqLen?: number;
}

/** The two shapes of issue 3's targets: stories260K 8×256 and SmolLM-135M shapes at 1×256. */
export const STEP_CASES: readonly StepCase[] = [
  { name: "stories260K", model: "stories260K", batch: 8, seqLen: 256, steps: 10, warmup: 2 },
  {
    name: "smollm-135m",
    model: "synthetic:smollm-135m",
    batch: 1,
    seqLen: 256,
    steps: 3,
    warmup: 1,
    quickSeqLen: 64,
  },
];

/** LoRA and optimizer settings every configuration is measured with. */
export const BENCH_LORA = { rank: 8, alpha: 16, seed: 1 } as const;
export const BENCH_ADAMW: TrainStepOptions = { lr: 1e-3, weightDecay: 0 };

/** A fixed, data-independent batch of B sequences of T tokens (ids and targets in [3, V)). */
export function benchBatch(config: LlamaConfig, B: number, T: number): TrainBatch {
  const M = B * T, V = config.vocabSize;
  const ids = Array.from({ length: M }, (_, i) => 3 + ((i * 7919) % (V - 3)));
  const targets = Array.from({ length: M }, (_, i) => 3 + ((i * 104729 + 13) % (V - 3)));
  return { ids, targets, B, T };
}

export interface StepTiming {
  /** Milliseconds per step: median and fastest of the timed steps. */
  medianMs: number;
  bestMs: number;
  steps: number;
  /** B·T / median step time. */
  tokensPerSecond: number;
  tokensPerSecondBest: number;
}

/** Times `steps` train steps after `warmup` untimed ones. */
export async function timeTrainSteps(
  model: LlamaModel,
  lora: LocalLora,
  batch: TrainBatch,
  opts: { steps: number; warmup: number; optimizer?: TrainStepOptions },
): Promise<StepTiming> {
  const optimizer = opts.optimizer ?? BENCH_ADAMW;
  for (let s = 0; s < opts.warmup; s++) await model.trainStep(batch, lora, optimizer);
  const times: number[] = [];
  for (let s = 0; s < Math.max(1, opts.steps); s++) {
    const t0 = performance.now();
    await model.trainStep(batch, lora, optimizer);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const medianMs = times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
  const tokens = batch.B * batch.T;
  return {
    medianMs,
    bestMs: times[0],
    steps: times.length,
    tokensPerSecond: tokens / (medianMs / 1000),
    tokensPerSecondBest: tokens / (times[0] / 1000),
  };
}
