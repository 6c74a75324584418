/**
 * The device's computation counted analytically per kernel call (DLORA.md §7 "device cost"):
 * a multiply-add is 2 FLOPs; elementwise work counts its arithmetic operations. Dimension
 * names: M = B·T rows, D model width, V vocabulary, N parameters.
 */
import { gemmFlops, loraBackwardFlops, loraForwardFlops } from "../../kernels/mod.ts";

export { loraBackwardFlops, loraForwardFlops };

/** FLOPs by the kind of work the device did. */
export interface DeviceFlops {
  /** ΔY = s·(X·Aᵀ)·Bᵀ of every active module (loraForwardFlops). */
  loraForward: number;
  /** ∂A, ∂B and ∂X_lora of every active module (loraBackwardFlops). */
  loraBackward: number;
  /** Gradient norm, clipping and AdamW over the active modules' parameters. */
  optimizer: number;
  /** The embedding lookup: a gather, no arithmetic (0, listed so nothing is hidden). */
  embedding: number;
  /** Final RMSNorm and LM head, forward and backward to ∂L/∂hL. */
  head: number;
  /** Softmax cross-entropy over the logits and its gradient (lossFlops). */
  loss: number;
}

export function zeroFlops(): DeviceFlops {
  return { loraForward: 0, loraBackward: 0, optimizer: 0, embedding: 0, head: 0, loss: 0 };
}

export function totalFlops(f: DeviceFlops): number {
  return f.loraForward + f.loraBackward + f.optimizer + f.embedding + f.head + f.loss;
}

/** RMSNorm forward (M,D): Σx² (2), then x·rstd·w (2) per element. */
export function rmsnormForwardFlops(M: number, D: number): number {
  return 4 * M * D;
}

/** RMSNorm backward (M,D): w·dy, its dot with x, and dx = rstd·(w·dy − x·c) ≈ 8 per element. */
export function rmsnormBackwardFlops(M: number, D: number): number {
  return 8 * M * D;
}

/** headForward: final RMSNorm and logits = xf·Wᵀ (M,V). */
export function headForwardFlops(M: number, D: number, V: number): number {
  return rmsnormForwardFlops(M, D) + gemmFlops(M, D, V);
}

/**
 * The fused softmax cross-entropy over (M,V) logits with its gradient: max, exp, sum, normalise,
 * subtract the one-hot, 5 per logit.
 */
export function lossFlops(M: number, V: number): number {
  return 5 * M * V;
}

/** headBackward: dxf = dlogits·W (M,V)×(V,D), the scale (1 per element), RMSNorm backward. */
export function headBackwardFlops(M: number, D: number, V: number): number {
  return gemmFlops(M, V, D) + M * D + rmsnormBackwardFlops(M, D);
}

/** AdamW per parameter: decay (2), m (3), v (4), √v, two divisions, the update (3) ≈ 14. */
export const ADAMW_FLOPS_PER_PARAM = 14;

/**
 * One optimizer step over N active parameters: Σg² for the norm (2 per parameter), the clip
 * scale when clipping applies (1), AdamW.
 */
export function optimizerFlops(N: number, clipped: boolean): number {
  return N * (2 + (clipped ? 1 : 0) + ADAMW_FLOPS_PER_PARAM);
}
