/**
 * The two ends of the U (DLORA.md §2) that stay on the device: the token embedding before the
 * blocks, and the final RMSNorm, LM head (tied or untied) and cross-entropy after them. All
 * frozen: the backward only carries the gradient through to hL.
 *
 * Dimension names: B batch, T positions, M = B·T rows, D model width, V vocabulary.
 */
import {
  crossEntropyBackward,
  crossEntropyForward,
  embeddingForward,
  type F32,
  gemmDyW,
  gemmXWt,
  type Kernels,
  rmsnormBackward,
  rmsnormForward,
  type WasmArray,
} from "../../kernels/mod.ts";
import type { BatchShape } from "./blocks.ts";
import { Arena, copyRows, type Freeable, ShapeCache } from "./buffers.ts";
import type { StepProfile } from "./profile.ts";
import type { LlamaConfig, LlamaWeights } from "./weights.ts";

export interface EndsOptions {
  profile?: StepProfile;
}

export interface HeadForwardOptions {
  /**
   * Prepare `headBackward` (default true): the softmax gradient is computed in the same pass
   * as the losses and written over the logits.
   */
  grad?: boolean;
}

export interface LossResult {
  /** (M) per-position loss in nats; 0 where the target is -1 (ignored). A copy. */
  losses: Float32Array;
  /** Mean over the counted positions (NaN when none). */
  mean: number;
  /** Positions whose target is not -1. */
  count: number;
}

export interface HeadBackwardOptions {
  /**
   * Scale of the gradient: ∂(scale·Σ losses)/∂hL. Default 1/count, the gradient of the mean;
   * with micro-batches pass 1/(tokens of the whole batch).
   */
  scale?: number;
}

export type LogitPositions = "all" | "last";

/** Buffers for one row count M. */
class EndsWorkspace implements Freeable {
  readonly arena: Arena;
  readonly ids: WasmArray<"i32">;
  readonly targets: WasmArray<"i32">;
  readonly h: F32; // (M,D) embeddings
  readonly hCopy: F32; // (M,D) hL handed in from outside this memory
  readonly rstd: F32; // (M)
  readonly xf: F32; // (M,D) final-normed hL
  readonly logits: F32; // (M,V)
  readonly losses: F32; // (M)
  readonly dxf: F32; // (M,D)
  readonly dh: F32; // (M,D) ∂L/∂hL

  constructor(k: Kernels, c: LlamaConfig, readonly M: number) {
    const a = (this.arena = new Arena(k)), D = c.dim;
    this.ids = k.alloc([M], "i32");
    this.targets = k.alloc([M], "i32");
    this.h = a.take([M, D]);
    this.hCopy = a.take([M, D]);
    this.rstd = a.take([M]);
    this.xf = a.take([M, D]);
    this.logits = a.take([M, c.vocabSize]);
    this.losses = a.take([M]);
    this.dxf = a.take([M, D]);
    this.dh = a.take([M, D]);
  }

  free(): void {
    this.arena.free();
    this.ids.free();
    this.targets.free();
  }
}

export class LlamaEnds implements Freeable {
  readonly config: LlamaConfig;
  profile: StepProfile | undefined;
  readonly #embedding: F32;
  readonly #finalNorm: F32;
  readonly #head: F32;
  readonly #workspaces = new ShapeCache<EndsWorkspace>(3, (w) => w === this.#pending?.ws);
  /** The workspace and hL of the last headForward with grad. */
  #pending: { ws: EndsWorkspace; hL: F32; count: number } | null = null;

  /** Uploads the embedding, final norm and LM head (once when tied). */
  constructor(
    readonly k: Kernels,
    w: Pick<LlamaWeights, "config" | "tokenEmbedding" | "finalNorm" | "lmHead">,
    opts: EndsOptions = {},
  ) {
    const c = (this.config = { ...w.config }), D = c.dim, V = c.vocabSize;
    this.profile = opts.profile;
    this.#embedding = k.from(w.tokenEmbedding, [V, D]);
    this.#finalNorm = k.from(w.finalNorm, [D]);
    this.#head = w.lmHead === w.tokenEmbedding ? this.#embedding : k.from(w.lmHead, [V, D]);
  }

  /** h0 (B,T,D) = embedding rows of ids (B·T). Valid until the next embed of this shape. */
  embed(ids: ArrayLike<number>, shape: BatchShape): F32 {
    const ws = this.#workspace(shape, ids.length, "embed", "ids");
    ws.ids.set(ids);
    const p = this.profile, t = p ? p.now() : 0;
    embeddingForward(this.k, ws.h, this.#embedding, ws.ids, this.config.dim);
    if (p) p.lap("embed", t);
    return ws.h;
  }

  /**
   * Final RMSNorm, LM head and cross-entropy over hL (B,T,D) against targets (B·T; -1 ignores a
   * position). With `grad` (default) it also prepares `backward`.
   */
  headForward(
    hL: F32 | Float32Array,
    targets: ArrayLike<number>,
    shape: BatchShape,
    opts: HeadForwardOptions = {},
  ): LossResult {
    const k = this.k, M = shape.B * shape.T;
    const ws = this.#workspace(shape, targets.length, "headForward", "targets");
    const h = this.#hidden(ws, hL, "headForward");
    ws.targets.set(targets);
    const p = this.profile;
    let t = p ? p.now() : 0;
    this.#logits(ws, h, M);
    if (p) t = p.lap("head.fwd", t);
    let result: LossResult;
    if (opts.grad ?? true) {
      // scale 1 here; headBackward applies the real scale to the (M,D) gradient instead of (M,V).
      const count = crossEntropyBackward(k, ws.logits, ws.logits, ws.targets, {
        scale: 1,
        losses: ws.losses,
      });
      result = summary(ws.losses.data, targets, count);
      this.#pending = { ws, hL: h, count };
    } else {
      const s = crossEntropyForward(k, ws.losses, ws.logits, ws.targets);
      result = summary(ws.losses.data, targets, s.count);
      this.#pending = null;
    }
    if (p) p.lap("xent.fwd+bwd", t);
    return result;
  }

  /** ∂L/∂hL (B,T,D) of the last headForward with grad; valid until the next one. */
  headBackward(opts: HeadBackwardOptions = {}): F32 {
    const pending = this.#pending;
    if (pending === null) {
      throw new Error(
        "LlamaEnds.headBackward: no headForward with grad to go back through; call " +
          "headForward(hL, targets, shape) first",
      );
    }
    this.#pending = null;
    const { ws, hL, count } = pending, k = this.k, c = this.config, M = ws.M;
    const scale = opts.scale ?? (count > 0 ? 1 / count : 0);
    const p = this.profile;
    let t = p ? p.now() : 0;
    gemmDyW(k, ws.dxf, ws.logits, this.#head, M, c.vocabSize, c.dim);
    if (p) t = p.lap("head.bwd", t);
    // No wrapper scales an array in place; optimScale is the optimizer kernel's x *= s.
    if (scale !== 1) k.exports.optimScale(ws.dxf.ptr, scale, ws.dxf.length);
    rmsnormBackward(k, ws.dh, null, ws.dxf, hL, this.#finalNorm, ws.rstd);
    if (p) p.lap("rmsnorm.bwd", t);
    return ws.dh;
  }

  /**
   * Logits of hL (B,T,D): (B·T,V) for "all" positions, or (B,V) of each sequence's last
   * position. Returns the wasm buffer, valid until the next call of the same shape.
   */
  logits(hL: F32 | Float32Array, shape: BatchShape, positions: LogitPositions = "all"): F32 {
    const M = shape.B * shape.T;
    const ws = this.#workspace(shape, M, "logits", "hL rows");
    const h = this.#hidden(ws, hL, "logits");
    if (positions === "all" || shape.T === 1) {
      this.#logits(ws, h, M);
      this.#pending = null;
      return ws.logits;
    }
    // Only the last row of each sequence goes through the head.
    const { B, T } = shape, D = this.config.dim;
    const last = this.#workspace({ B, T: 1 }, B, "logits", "sequences");
    copyRows(this.k, last.hCopy, D, 0, h, T * D, (T - 1) * D, B, D);
    this.#logits(last, last.hCopy, B);
    this.#pending = null;
    return last.logits;
  }

  free(): void {
    this.#workspaces.clear();
    this.#pending = null;
    this.#embedding.free();
    this.#finalNorm.free();
    if (this.#head !== this.#embedding) this.#head.free();
  }

  // -------------------------------------------------------------------------------------------

  #workspace(shape: BatchShape, n: number, fn: string, what: string): EndsWorkspace {
    const { B, T } = shape;
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 1) {
      throw new RangeError(`LlamaEnds.${fn}: B and T must be positive integers, got ${B}×${T}`);
    }
    const M = B * T;
    if (n !== M) {
      throw new RangeError(`LlamaEnds.${fn}: ${n} ${what} for a batch of B·T = ${B}·${T} = ${M}`);
    }
    return this.#workspaces.get(String(M), () => new EndsWorkspace(this.k, this.config, M));
  }

  /** hL as an array in this memory: used in place, or copied into the workspace. */
  #hidden(ws: EndsWorkspace, hL: F32 | Float32Array, fn: string): F32 {
    const n = ws.M * this.config.dim;
    if (hL.length !== n) {
      throw new RangeError(`LlamaEnds.${fn}: hL has ${hL.length} values, expected B·T·D = ${n}`);
    }
    if (hL instanceof Float32Array) {
      ws.hCopy.data.set(hL);
      return ws.hCopy;
    }
    if (hL.kernels !== this.k) {
      ws.hCopy.data.set(hL.data);
      return ws.hCopy;
    }
    return hL;
  }

  #logits(ws: EndsWorkspace, h: F32, M: number): void {
    const c = this.config;
    rmsnormForward(this.k, ws.xf, ws.rstd, h, this.#finalNorm, c.normEps);
    gemmXWt(this.k, ws.logits, ws.xf, this.#head, M, c.dim, c.vocabSize);
  }
}

function summary(losses: Float32Array, targets: ArrayLike<number>, count: number): LossResult {
  let sum = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] !== -1) sum += losses[i];
  return { losses: losses.slice(), mean: count > 0 ? sum / count : NaN, count };
}
