/**
 * Single-process LoRA fine-tuning (the cloud-only baseline of DLORA.md §8 `train`): packed text,
 * seeded random windows (`sampleBatch`), micro-batches summed into one AdamW step, warm-up and
 * decay of the learning rate, global-norm clipping. Deterministic given the seed: the data order
 * comes from mulberry32(seed), LoRA's A from LocalLora's seed (= seed), dropout masks from
 * seed + 1, and every kernel is deterministic for a fixed thread count.
 */
import { Kernels } from "../../kernels/mod.ts";
import type { Adapter } from "../adapters/peft.ts";
import { sampleBatch } from "../data/windows.ts";
import { LlamaModel, type TrainBatch } from "../model/llama.ts";
import { LocalLora, mulberry32 } from "../model/lora.ts";
import { type Proj, PROJS } from "../model/modules.ts";
import type { LlamaWeights } from "../model/weights.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { loraToAdapter } from "./adapter.ts";
import { learningRate, type Schedule, SCHEDULES } from "./schedule.ts";

export interface TrainOptions {
  /** A model already in wasm memory (kept, and `lora` is returned), or weights to load. */
  model: LlamaModel | LlamaWeights;
  /** Training text, encoded once with BOS; or pass `ids`. */
  text?: string;
  tokenizer?: Tokenizer;
  /** Already encoded training tokens (instead of text + tokenizer). */
  ids?: ArrayLike<number>;
  steps: number;
  /** Default 8. */
  rank?: number;
  /** Default 16 (scale alpha/rank = 2). */
  alpha?: number;
  /** Default all seven projections. */
  targets?: readonly Proj[];
  /** Peak learning rate, default 1e-3. */
  lr?: number;
  /** Sequences per micro-batch, default 8. */
  batch?: number;
  /** Tokens per sequence, default 256. */
  seqLen?: number;
  /** Default 0. */
  seed?: number;
  /** Micro-batches per optimizer step, default 1. */
  accumulate?: number;
  /** Warm-up steps, default 0. */
  warmup?: number;
  /** Default "cosine" (decay to 10 % of lr). */
  schedule?: Schedule;
  /** Clip the global gradient norm to this; default 1 (as Hugging Face's Trainer), 0 = off. */
  maxGradNorm?: number;
  /** AdamW weight decay, default 0 (as Hugging Face's Trainer). */
  weightDecay?: number;
  /** LoRA dropout, default 0. */
  dropout?: number;
  /** Worker threads when `model` is weights (default 1). */
  threads?: number;
  /** adapter_config.json's base_model_name_or_path. */
  baseModel?: string;
  /** Called after every optimizer step; a returned promise is awaited. */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

export interface StepInfo {
  /** 1-based. */
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Training seconds so far (setup excluded). */
  seconds: number;
  tokensPerSecond: number;
}

export interface TrainResult {
  /** Mean training loss of each step (before its update). */
  losses: number[];
  /** The trained modules, ready for `writePeftAdapter`. */
  adapter: Adapter;
  /** Input tokens processed per second of training (setup excluded). */
  tokensPerSecond: number;
  tokens: number;
  seconds: number;
  /** The trained LocalLora when `model` was a LlamaModel (the caller frees it), else null. */
  lora: LocalLora | null;
}

/** Checks the options a person typed; errors name the option. */
export function validateTrainOptions(o: TrainOptions): void {
  const int = (name: string, v: number | undefined, min: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min)) {
      throw new RangeError(`train: ${name} must be an integer ≥ ${min}, got ${v}`);
    }
  };
  int("steps", o.steps, 1);
  int("rank", o.rank, 1);
  int("batch", o.batch, 1);
  int("seqLen", o.seqLen, 1);
  int("accumulate", o.accumulate, 1);
  int("warmup", o.warmup, 0);
  int("threads", o.threads, 1);
  if (o.lr !== undefined && !(o.lr > 0 && Number.isFinite(o.lr))) {
    throw new RangeError(`train: lr must be a positive number, got ${o.lr}`);
  }
  if (o.schedule !== undefined && !SCHEDULES.includes(o.schedule)) {
    throw new RangeError(
      `train: unknown schedule "${o.schedule}"; choose ${SCHEDULES.join(", ")}`,
    );
  }
  if (o.maxGradNorm !== undefined && !(o.maxGradNorm >= 0)) {
    throw new RangeError(`train: maxGradNorm must be ≥ 0 (0 = no clipping), got ${o.maxGradNorm}`);
  }
  if (o.weightDecay !== undefined && !(o.weightDecay >= 0)) {
    throw new RangeError(`train: weightDecay must be ≥ 0, got ${o.weightDecay}`);
  }
  if (o.ids === undefined && (o.text === undefined || o.tokenizer === undefined)) {
    throw new Error("train: give the training text with its tokenizer, or token ids");
  }
}

export async function train(opts: TrainOptions): Promise<TrainResult> {
  validateTrainOptions(opts);
  const {
    steps,
    rank = 8,
    alpha = 16,
    targets = PROJS,
    lr = 1e-3,
    batch = 8,
    seqLen = 256,
    seed = 0,
    accumulate = 1,
    warmup = 0,
    schedule = "cosine",
    maxGradNorm = 1,
    weightDecay = 0,
    dropout = 0,
  } = opts;
  const ids = opts.ids ?? opts.tokenizer!.encode(opts.text!, { bos: true });
  if (ids.length < seqLen + 1) {
    throw new RangeError(
      `train: the training text has ${ids.length} tokens; a window of --seq-len ${seqLen} needs ` +
        `${seqLen + 1} (lower --seq-len or give more text)`,
    );
  }
  const owned = !(opts.model instanceof LlamaModel);
  const k = owned ? await Kernels.load({ threads: opts.threads ?? 1 }) : null;
  const model = opts.model instanceof LlamaModel
    ? opts.model
    : new LlamaModel(k!, opts.model as LlamaWeights);
  const lora = new LocalLora(model.k, model.config, {
    rank,
    alpha,
    targets,
    seed,
    dropout,
    dropoutSeed: seed + 1,
  });
  let keepLora = false;
  try {
    const rand = mulberry32(seed);
    const losses: number[] = [];
    const tokensPerStep = accumulate * batch * seqLen;
    const t0 = performance.now();
    for (let step = 0; step < steps; step++) {
      const micro: TrainBatch[] = [];
      for (let a = 0; a < accumulate; a++) {
        const { inputs, targets: next } = sampleBatch(ids, batch, seqLen, rand);
        micro.push({ ids: inputs, targets: next, B: batch, T: seqLen });
      }
      const stepLr = learningRate(step, { lr, steps, warmup, schedule });
      const r = await model.trainStep(micro, lora, {
        lr: stepLr,
        weightDecay,
        maxGradNorm: maxGradNorm > 0 ? maxGradNorm : undefined,
      });
      if (!Number.isFinite(r.loss)) {
        throw new Error(
          `train: the loss became ${r.loss} at step ${step + 1}; lower --lr (now ${lr})`,
        );
      }
      losses.push(r.loss);
      const seconds = (performance.now() - t0) / 1000;
      await opts.onStep?.({
        step: step + 1,
        steps,
        loss: r.loss,
        lr: stepLr,
        gradNorm: r.gradNorm,
        seconds,
        tokensPerSecond: ((step + 1) * tokensPerStep) / seconds,
      });
    }
    const seconds = (performance.now() - t0) / 1000;
    const adapter = loraToAdapter(lora, { baseModel: opts.baseModel ?? "" });
    keepLora = !owned;
    return {
      losses,
      adapter,
      tokensPerSecond: (steps * tokensPerStep) / seconds,
      tokens: steps * tokensPerStep,
      seconds,
      lora: owned ? null : lora,
    };
  } finally {
    if (!keepLora) lora.free();
    if (owned) {
      model.free();
      k!.close();
    }
  }
}
