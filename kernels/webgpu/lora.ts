/**
 * LoRA on WebGPU, as chains of the WGSL GEMM (gemm.ts) recorded into one
 * command encoder and submitted together. Names are fixed for the file:
 * M tokens, IN input features, R rank, OUT output features, s = scale.
 *   forward:  XA = X·Aᵀ (M,R);  ΔY = s·XA·Bᵀ (M,OUT)
 *   backward: GB = G·B (M,R);   dB = s·Gᵀ·XA (OUT,R);  dA = s·GBᵀ·X (R,IN);
 *             dX = s·GB·A (M,IN)
 * Functions only enqueue work; read a tensor to wait for it.
 */
import type { Gpu, GpuTensor } from "./device.ts";
import { expectDims } from "../dims.ts";
import { checkDistinct, checkTensor, type Product, runProducts } from "./gemm.ts";

/** C (rows,cols) = alpha·op(A)·op(B) [+ C], inner length `inner`. */
function product(
  C: GPUBuffer,
  A: GPUBuffer,
  B: GPUBuffer,
  rows: number,
  cols: number,
  inner: number,
  transA: boolean,
  transB: boolean,
  alpha: number,
  accumulate: boolean,
): Product {
  return { C, A, B, rows, cols, inner, transA, transB, alpha, accumulate };
}

function checkScale(fn: string, scale: number): void {
  if (!Number.isFinite(scale)) throw new RangeError(`${fn}: scale must be finite, got ${scale}`);
}

export interface LoraForwardOptions {
  /** ΔY += … instead of ΔY = … (XA is always overwritten). */
  accumulate?: boolean;
}

/**
 * ΔY = s·(X·Aᵀ)·Bᵀ [+ ΔY], keeping XA for backward.
 * X is (M,IN), A is (R,IN), B is (OUT,R); XA is (M,R), dY is (M,OUT).
 */
export function loraForward(
  gpu: Gpu,
  dY: GpuTensor,
  XA: GpuTensor,
  X: GpuTensor,
  A: GpuTensor,
  B: GpuTensor,
  M: number,
  IN: number,
  R: number,
  OUT: number,
  scale: number,
  opts: LoraForwardOptions = {},
): void {
  const fn = "loraForward";
  expectDims(fn, { M, IN, R, OUT });
  checkScale(fn, scale);
  checkTensor(gpu, fn, "dY", dY, M * OUT, "M·OUT");
  checkTensor(gpu, fn, "XA", XA, M * R, "M·R");
  checkTensor(gpu, fn, "X", X, M * IN, "M·IN");
  checkTensor(gpu, fn, "A", A, R * IN, "R·IN");
  checkTensor(gpu, fn, "B", B, OUT * R, "OUT·R");
  checkDistinct(fn, { dY, XA, X, A, B });
  runProducts(gpu, [
    product(XA.buffer, X.buffer, A.buffer, M, R, IN, false, true, 1, false),
    product(
      dY.buffer,
      XA.buffer,
      B.buffer,
      M,
      OUT,
      R,
      false,
      true,
      scale,
      opts.accumulate ?? false,
    ),
  ]);
}

export interface LoraGrads {
  /** (M,IN); omit when the input gradient is not needed. */
  dX?: GpuTensor;
  /** (R,IN) */
  dA: GpuTensor;
  /** (OUT,R) */
  dB: GpuTensor;
}

export interface LoraBackwardOptions {
  /** dA += …, dB += … (gradient accumulation over micro-batches). */
  accumulateGrads?: boolean;
  /** dX += … (sum over the modules that share one input). */
  accumulateDx?: boolean;
}

/**
 * Gradients of ΔY = s·(X·Aᵀ)·Bᵀ given G = ∂L/∂ΔY.
 * G is (M,OUT), X is (M,IN), XA is (M,R) from forward, A is (R,IN), B is (OUT,R);
 * dB is (OUT,R), dA is (R,IN), dX is (M,IN). G·B (M,R) lives in a scratch buffer.
 */
export function loraBackward(
  gpu: Gpu,
  grads: LoraGrads,
  G: GpuTensor,
  X: GpuTensor,
  XA: GpuTensor,
  A: GpuTensor,
  B: GpuTensor,
  M: number,
  IN: number,
  R: number,
  OUT: number,
  scale: number,
  opts: LoraBackwardOptions = {},
): void {
  const fn = "loraBackward";
  const { dX, dA, dB } = grads;
  expectDims(fn, { M, IN, R, OUT });
  checkScale(fn, scale);
  checkTensor(gpu, fn, "G", G, M * OUT, "M·OUT");
  checkTensor(gpu, fn, "X", X, M * IN, "M·IN");
  checkTensor(gpu, fn, "XA", XA, M * R, "M·R");
  checkTensor(gpu, fn, "A", A, R * IN, "R·IN");
  checkTensor(gpu, fn, "B", B, OUT * R, "OUT·R");
  checkTensor(gpu, fn, "dA", dA, R * IN, "R·IN");
  checkTensor(gpu, fn, "dB", dB, OUT * R, "OUT·R");
  if (dX) checkTensor(gpu, fn, "dX", dX, M * IN, "M·IN");
  checkDistinct(fn, { dX, dA, dB, G, X, XA, A, B });
  const grad = opts.accumulateGrads ?? false;
  const gbBytes = M * R * 4;
  gpu.checkBindingSize("loraBackward: G·B scratch (M·R floats)", gbBytes);
  const GB = gpu.scratch("lora-gb", Math.max(4, gbBytes));
  const products: Product[] = [
    // GB = G·B, unscaled (s is applied once, in each product below).
    product(GB, G.buffer, B.buffer, M, R, OUT, false, false, 1, false),
    // dB = s·Gᵀ·XA
    product(dB.buffer, G.buffer, XA.buffer, OUT, R, M, true, false, scale, grad),
    // dA = s·GBᵀ·X
    product(dA.buffer, GB, X.buffer, R, IN, M, true, false, scale, grad),
  ];
  // dX = s·GB·A
  if (dX) {
    products.push(
      product(dX.buffer, GB, A.buffer, M, IN, R, false, false, scale, opts.accumulateDx ?? false),
    );
  }
  runProducts(gpu, products);
}
