/**
 * LoRA host wrappers (kernels/assembly/lora.ts) for one adapter pair on a
 * projection: A (R,IN), B (OUT,R), scale s, on M rows.
 *   loraForward:  XA (M,R) = X·Aᵀ (kept for backward), ΔY (M,OUT) [+]= s·XA·Bᵀ
 *   loraBackward: given G = ∂L/∂ΔY (M,OUT):
 *                 dB [+]= s·Gᵀ·XA, dA [+]= s·(G·B)ᵀ·X, dX [+]= s·(G·B)·A
 * Rows are split over `k.threads` threads; in backward each thread past the
 * first sums its rows' share of dA and dB into its own scratch, and the
 * shares are added up afterwards.
 */
import type { F32, Kernels } from "./core.ts";
import { expectDims, expectLength } from "./dims.ts";
import { checkNoOverlap, threadScratch } from "./gemm.ts";

export interface LoraForwardOptions {
  /** ΔY += … instead of ΔY = … (add the adapter onto Y = X·Wᵀ in place). */
  accumulate?: boolean;
}

export interface LoraGrads {
  /**
   * (M,IN): gradient of the adapter's input; null when nothing upstream needs it (no trained
   * module earlier in the model), which skips its 2·M·R·IN flops.
   */
  dX: F32 | null;
  /** (R,IN) */
  dA: F32;
  /** (OUT,R) */
  dB: F32;
}

export interface LoraBackwardOptions {
  /** dA += …, dB += … (gradient accumulation over micro-batches). */
  accumulateGrads?: boolean;
  /** dX += … (add onto the frozen path's dX = G·W). */
  accumulateDx?: boolean;
}

/** Flops of loraForward: X·Aᵀ and XA·Bᵀ. */
export function loraForwardFlops(M: number, IN: number, R: number, OUT: number): number {
  return 2 * M * R * (IN + OUT);
}

/** Flops of loraBackward: G·B, Gᵀ·XA, GBᵀ·X and GB·A. */
export function loraBackwardFlops(
  M: number,
  IN: number,
  R: number,
  OUT: number,
  opts: { dX?: boolean } = {},
): number {
  // G·B (2MRO), dB (2MRO), dA (2MRI), dX (2MRI).
  return 4 * M * R * (IN + OUT) - (opts.dX === false ? 2 * M * R * IN : 0);
}

/** Below this many flops per thread, the rows stay on one thread. */
const MIN_THREAD_FLOPS = 2e6;
/** Row cuts fall on multiples of this (whole register tiles). */
const ROW_GRAIN = 6;

/** Row ranges for the threads worth using. */
function rowRanges(k: Kernels, M: number, flops: number): [number, number][] {
  const parts = Math.min(
    k.threads,
    Math.floor(flops / MIN_THREAD_FLOPS),
    Math.floor(M / ROW_GRAIN),
  );
  if (parts <= 1) return [[0, M]];
  const at = [0];
  for (let t = 1; t < parts; t++) at.push(Math.round((M * t) / parts / ROW_GRAIN) * ROW_GRAIN);
  at.push(M);
  const out: [number, number][] = [];
  for (let t = 0; t < parts; t++) if (at[t + 1] > at[t]) out.push([at[t], at[t + 1]]);
  return out;
}

function checkScale(fn: string, scale: number): void {
  if (!Number.isFinite(scale)) throw new RangeError(`${fn}: scale must be finite, got ${scale}`);
}

/**
 * XA = X·Aᵀ and ΔY = s·XA·Bᵀ (ΔY += … with accumulate).
 * X is (M,IN), A (R,IN), B (OUT,R); XA is (M,R), ΔY (M,OUT).
 */
export function loraForward(
  k: Kernels,
  dY: F32,
  XA: F32,
  X: F32,
  A: F32,
  B: F32,
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
  expectLength(k, fn, "dY", dY, M * OUT, "M·OUT");
  expectLength(k, fn, "XA", XA, M * R, "M·R");
  expectLength(k, fn, "X", X, M * IN, "M·IN");
  expectLength(k, fn, "A", A, R * IN, "R·IN");
  expectLength(k, fn, "B", B, OUT * R, "OUT·R");
  const inputs: [string, F32][] = [["X", X], ["A", A], ["B", B]];
  checkNoOverlap(fn, ["dY", dY], [...inputs, ["XA", XA]]);
  checkNoOverlap(fn, ["XA", XA], inputs);
  const ranges = rowRanges(k, M, loraForwardFlops(M, IN, R, OUT));
  const most = Math.max(...ranges.map(([a, b]) => b - a));
  const scratch = threadScratch(k, k.exports.lora_scratch_bytes(most, IN, R, OUT), ranges.length);
  const acc = opts.accumulate ? 1 : 0;
  k.parallel(
    "lora_forward",
    ranges.map(([i0, i1], t) => [
      dY.ptr + i0 * OUT * 4,
      XA.ptr + i0 * R * 4,
      X.ptr + i0 * IN * 4,
      A.ptr,
      B.ptr,
      i1 - i0,
      IN,
      R,
      OUT,
      scale,
      acc,
      scratch[t],
    ]),
  );
}

/**
 * Gradients of ΔY = s·X·Aᵀ·Bᵀ given G = ∂L/∂ΔY (M,OUT), the forward's X (M,IN)
 * and XA (M,R): dB (OUT,R), dA (R,IN), dX (M,IN), each written or (with the
 * options) added to.
 */
export function loraBackward(
  k: Kernels,
  grads: LoraGrads,
  G: F32,
  X: F32,
  XA: F32,
  A: F32,
  B: F32,
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
  if (dX !== null) expectLength(k, fn, "dX", dX, M * IN, "M·IN");
  expectLength(k, fn, "dA", dA, R * IN, "R·IN");
  expectLength(k, fn, "dB", dB, OUT * R, "OUT·R");
  expectLength(k, fn, "G", G, M * OUT, "M·OUT");
  expectLength(k, fn, "X", X, M * IN, "M·IN");
  expectLength(k, fn, "XA", XA, M * R, "M·R");
  expectLength(k, fn, "A", A, R * IN, "R·IN");
  expectLength(k, fn, "B", B, OUT * R, "OUT·R");
  const inputs: [string, F32][] = [["G", G], ["X", X], ["XA", XA], ["A", A], ["B", B]];
  if (dX !== null) checkNoOverlap(fn, ["dX", dX], [...inputs, ["dA", dA], ["dB", dB]]);
  checkNoOverlap(fn, ["dA", dA], [...inputs, ["dB", dB]]);
  checkNoOverlap(fn, ["dB", dB], inputs);
  const ranges = rowRanges(k, M, loraBackwardFlops(M, IN, R, OUT, { dX: dX !== null }));
  const most = Math.max(...ranges.map(([a, b]) => b - a));
  const own = Math.ceil(k.exports.lora_scratch_bytes(most, IN, R, OUT) / 64) * 64;
  // Threads past the first also hold their share of dA and dB.
  const shareA = Math.ceil((R * IN * 4) / 64) * 64, shareB = OUT * R * 4;
  const extra = ranges.length > 1 ? shareA + shareB : 0;
  const scratch = threadScratch(k, own + extra, ranges.length);
  const accG = opts.accumulateGrads ? 1 : 0;
  const accX = dX === null ? 4 : opts.accumulateDx ? 2 : 0;
  k.parallel(
    "lora_backward",
    ranges.map(([i0, i1], t) => {
      const mine = t === 0;
      const da = mine ? dA.ptr : scratch[t] + own, db = mine ? dB.ptr : scratch[t] + own + shareA;
      return [
        dX === null ? 0 : dX.ptr + i0 * IN * 4,
        da,
        db,
        G.ptr + i0 * OUT * 4,
        X.ptr + i0 * IN * 4,
        XA.ptr + i0 * R * 4,
        A.ptr,
        B.ptr,
        i1 - i0,
        IN,
        R,
        OUT,
        scale,
        (mine ? accG : 0) | accX,
        scratch[t],
      ];
    }),
  );
  for (let t = 1; t < ranges.length; t++) {
    k.exports.axpy(dA.ptr, scratch[t] + own, 1, R * IN);
    k.exports.axpy(dB.ptr, scratch[t] + own + shareA, 1, OUT * R);
  }
}
