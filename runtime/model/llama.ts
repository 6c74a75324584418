/**
 * A Llama model with LoRA in one process: the three parts of the U-shaped split (DLORA.md §2)
 * composed locally. `embed` and `headForward`/`headBackward` are the device's share
 * (ends.ts), `blocksForward`/`blocksBackward` the coordinator's (blocks.ts); the split reuses
 * those two classes as they are.
 */
import type { F32, Kernels } from "../../kernels/mod.ts";
import { type BatchShape, type BlocksOptions, type ForwardOptions, LlamaBlocks } from "./blocks.ts";
import {
  type HeadBackwardOptions,
  type HeadForwardOptions,
  LlamaEnds,
  type LogitPositions,
  type LossResult,
} from "./ends.ts";
import type { LoraHooks } from "./hooks.ts";
import type { LocalLora, LoraOptimizerConfig } from "./lora.ts";
import type { StepProfile } from "./profile.ts";
import type { LlamaConfig, LlamaWeights } from "./weights.ts";

export type ModelOptions = BlocksOptions;

/** B sequences of T inputs and their targets (B·T each, row-major; target -1 = ignored). */
export interface TrainBatch extends BatchShape {
  ids: ArrayLike<number>;
  targets: ArrayLike<number>;
}

export interface TrainStepOptions extends LoraOptimizerConfig {
  /** Clip the active modules' global gradient norm to this (default: no clipping). */
  maxGradNorm?: number;
}

export interface TrainStepResult {
  /** Mean loss over every counted target of the step's micro-batches (before the update). */
  loss: number;
  /** Global norm of the active modules' gradients before clipping. */
  gradNorm: number;
  /** Targets counted. */
  count: number;
}

export interface LossOptions {
  hooks?: LoraHooks;
  /** Keep what `backward` needs (default false). */
  grad?: boolean;
}

export interface LogitsOptions {
  hooks?: LoraHooks;
  /** Every position (B·T,V) or each sequence's last (B,V); default "all". */
  positions?: LogitPositions;
}

export class LlamaModel {
  readonly config: LlamaConfig;
  readonly ends: LlamaEnds;
  readonly blocks: LlamaBlocks;

  /** Uploads `weights` into `k`'s memory once. */
  constructor(readonly k: Kernels, weights: LlamaWeights, opts: ModelOptions = {}) {
    this.config = { ...weights.config };
    this.ends = new LlamaEnds(k, weights, { profile: opts.profile });
    this.blocks = new LlamaBlocks(k, weights.config, weights.layers, opts);
  }

  /** Times every kernel call into `profile` (undefined stops). */
  setProfile(profile: StepProfile | undefined): void {
    this.ends.profile = profile;
    this.blocks.profile = profile;
  }

  // --- the three parts -------------------------------------------------------------------------

  /** Device: ids (B·T) → h0 (B,T,D). */
  embed(ids: ArrayLike<number>, shape: BatchShape): F32 {
    return this.ends.embed(ids, shape);
  }

  /** Coordinator: h0 → hL through every block, calling `hooks` at each projection group. */
  blocksForward(
    h0: F32 | Float32Array,
    shape: BatchShape,
    hooks?: LoraHooks,
    opts?: ForwardOptions,
  ): Promise<F32> {
    return this.blocks.forward(h0, shape, hooks, opts);
  }

  /** Coordinator: ∂L/∂hL → ∂L/∂h0, LoRA gradients through `hooks`. */
  blocksBackward(dhL: F32 | Float32Array, hooks?: LoraHooks): Promise<F32> {
    return this.blocks.backward(dhL, hooks);
  }

  /** Device: final norm, head, cross-entropy. */
  headForward(
    hL: F32 | Float32Array,
    targets: ArrayLike<number>,
    shape: BatchShape,
    opts?: HeadForwardOptions,
  ): LossResult {
    return this.ends.headForward(hL, targets, shape, opts);
  }

  /** Device: ∂L/∂hL of the last headForward with grad. */
  headBackward(opts?: HeadBackwardOptions): F32 {
    return this.ends.headBackward(opts);
  }

  // --- composed ------------------------------------------------------------------------------

  /** Loss of predicting `targets` from `ids` (B·T each). */
  async forwardLoss(
    ids: ArrayLike<number>,
    targets: ArrayLike<number>,
    shape: BatchShape,
    opts: LossOptions = {},
  ): Promise<LossResult> {
    const grad = opts.grad ?? false;
    const h0 = this.embed(ids, shape);
    const hL = await this.blocksForward(h0, shape, opts.hooks, { grad });
    return this.headForward(hL, targets, shape, { grad });
  }

  /**
   * After `forwardLoss(..., {grad: true})`: back through head and blocks, accumulating the
   * hooks' LoRA gradients. Returns ∂L/∂h0.
   */
  async backward(hooks?: LoraHooks, opts?: HeadBackwardOptions): Promise<F32> {
    const dhL = this.headBackward(opts);
    return await this.blocksBackward(dhL, hooks);
  }

  /**
   * One optimizer step of `lora` over one batch or several micro-batches (gradients summed,
   * scaled to the mean over all their targets): zero grads, forward, backward, optional
   * clipping, AdamW on the active modules.
   */
  async trainStep(
    batches: TrainBatch | readonly TrainBatch[],
    lora: LocalLora,
    opts: TrainStepOptions,
  ): Promise<TrainStepResult> {
    const list = Array.isArray(batches) ? batches : [batches as TrainBatch];
    let count = 0;
    for (const b of list) {
      for (let i = 0; i < b.targets.length; i++) if (b.targets[i] !== -1) count++;
    }
    lora.zeroGrad();
    let sum = 0;
    for (const b of list) {
      const r = await this.forwardLoss(b.ids, b.targets, b, { hooks: lora, grad: true });
      if (r.count > 0) sum += r.mean * r.count;
      // ∂L/∂h0 is not wanted (the embedding is frozen): the pass stops at the first module.
      const dhL = this.headBackward({ scale: count > 0 ? 1 / count : 0 });
      await this.blocks.backward(dhL, lora, { inputGrad: false });
    }
    const { maxGradNorm, ...adam } = opts;
    const p = this.blocks.profile, t = p ? p.now() : 0;
    const gradNorm = maxGradNorm !== undefined ? lora.clipGradNorm(maxGradNorm) : lora.gradNorm();
    lora.step(adam);
    if (p) p.lap("adamw+norm", t);
    return { loss: count > 0 ? sum / count : NaN, gradNorm, count };
  }

  /** Logits (a copy): (B·T,V) for every position or (B,V) for the last of each sequence. */
  async logits(
    ids: ArrayLike<number>,
    shape: BatchShape,
    opts: LogitsOptions = {},
  ): Promise<Float32Array> {
    const h0 = this.embed(ids, shape);
    const hL = await this.blocksForward(h0, shape, opts.hooks, { grad: false });
    return this.ends.logits(hL, shape, opts.positions ?? "all").toArray();
  }

  free(): void {
    this.ends.free();
    this.blocks.free();
  }
}
