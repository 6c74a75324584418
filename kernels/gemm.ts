/**
 * GEMM host wrappers (kernels/assembly/gemm.ts): the three products of a
 * linear layer, row-major f32, each optionally accumulating into its output.
 *   gemmXWt:  Y  = X·Wᵀ    X (M,K), W (N,K), Y (M,N)    forward
 *   gemmDyW:  dX = dY·W    dY (M,N), W (N,K), dX (M,K)  input gradient
 *   gemmDyTX: dW = dYᵀ·X   dY (M,N), X (M,K), dW (N,K)  weight gradient
 * Large products are split over `k.threads` threads by blocks of the output;
 * each thread packs into its own scratch, kept per Kernels instance and grown
 * on demand, so the hot path allocates and copies nothing.
 */
import type { F32, Kernels } from "./core.ts";
import { expectDims, expectLength } from "./dims.ts";

export interface GemmOptions {
  /** C += … instead of C = … */
  accumulate?: boolean;
}

/** Flops of one M×K×N product (a multiply-add counts as two). */
export function gemmFlops(M: number, K: number, N: number): number {
  return 2 * M * K * N;
}

// ---------------------------------------------------------------------------
// Validation shared with kernels/lora.ts (dimension and length checks live in dims.ts).

/** Throws when output `out` shares memory with any of `inputs`. */
export function checkNoOverlap(fn: string, out: [string, F32], inputs: [string, F32][]): void {
  const [on, o] = out;
  for (const [n, a] of inputs) {
    if (o.ptr < a.ptr + a.byteLength && a.ptr < o.ptr + o.byteLength) {
      throw new Error(`${fn}: output ${on} overlaps input ${n}; pass separate arrays`);
    }
  }
}

// ---------------------------------------------------------------------------
// Per-thread scratch and work splitting.

const scratchOf = new WeakMap<Kernels, F32[]>();

/**
 * Byte pointers to `threads` scratch areas of at least `bytes` each, owned by
 * `k` and reused across calls (reallocated only to grow).
 */
export function threadScratch(k: Kernels, bytes: number, threads: number): number[] {
  let areas = scratchOf.get(k);
  if (areas === undefined) {
    areas = [];
    scratchOf.set(k, areas);
  }
  const floats = Math.ceil(bytes / 4);
  for (let t = 0; t < threads; t++) {
    const have = areas[t];
    if (have === undefined || have.length < floats) {
      have?.free();
      // Grow geometrically so a slowly rising size does not reallocate every call.
      areas[t] = k.alloc(Math.max(floats, Math.ceil((have?.length ?? 0) * 1.5)));
    }
  }
  return areas.slice(0, threads).map((a) => a.ptr);
}

/** A block [i0,i1)×[j0,j1) of an output. */
export type Block = [number, number, number, number];

/** Below this many flops per thread, a product stays on one thread. */
const MIN_THREAD_FLOPS = 2e6;
/** Row cuts fall on multiples of this (whole register tiles). */
const ROW_GRAIN = 6;
/** Column cuts fall on multiples of this. */
const COL_GRAIN = 24;
/**
 * Outputs this narrow are never split by columns: the narrow path reads A
 * once for all columns, and assumes a block has all of them.
 */
const NARROW_COLS = 64;

function cuts(n: number, parts: number, grain: number): number[] {
  const at = [0];
  for (let t = 1; t < parts; t++) {
    at.push(Math.min(n, Math.round((n * t) / parts / grain) * grain));
  }
  at.push(n);
  return at;
}

/**
 * Blocks of a rows×cols output (reduction `inner`) for the threads worth
 * using: split by rows unless the output is short and wide.
 */
export function splitOutput(k: Kernels, rows: number, cols: number, inner: number): Block[] {
  const byWork = Math.floor(gemmFlops(rows, inner, cols) / MIN_THREAD_FLOPS);
  const threads = Math.min(k.threads, byWork);
  if (threads <= 1) return [[0, rows, 0, cols]];
  const byRows = rows >= cols || cols <= NARROW_COLS;
  const n = byRows ? rows : cols, grain = byRows ? ROW_GRAIN : COL_GRAIN;
  const parts = Math.min(threads, Math.floor(n / grain));
  if (parts <= 1) return [[0, rows, 0, cols]];
  const at = cuts(n, parts, grain);
  const blocks: Block[] = [];
  for (let t = 0; t < parts; t++) {
    if (at[t + 1] > at[t]) {
      blocks.push(byRows ? [at[t], at[t + 1], 0, cols] : [0, rows, at[t], at[t + 1]]);
    }
  }
  return blocks;
}

/** Runs one layout export over the blocks of its output, one thread each. */
function run(
  k: Kernels,
  name: string,
  head: number[],
  accumulate: boolean,
  rows: number,
  cols: number,
  inner: number,
): void {
  const blocks = splitOutput(k, rows, cols, inner);
  const aByRows = name === "gemm_dytx" ? 0 : 1;
  let bytes = 0;
  for (const [i0, i1, j0, j1] of blocks) {
    bytes = Math.max(bytes, k.exports.gemm_scratch_bytes(i1 - i0, j1 - j0, inner, aByRows));
  }
  const scratch = threadScratch(k, bytes, blocks.length);
  k.parallel(name, blocks.map((b, t) => [...head, accumulate ? 1 : 0, scratch[t], ...b]));
}

// ---------------------------------------------------------------------------
// The three layouts.

/** Y = X·Wᵀ (+ Y with accumulate). X is (M,K), W is (N,K), Y is (M,N). */
export function gemmXWt(
  k: Kernels,
  Y: F32,
  X: F32,
  W: F32,
  M: number,
  K: number,
  N: number,
  opts: GemmOptions = {},
): void {
  const fn = "gemmXWt";
  expectDims(fn, { M, K, N });
  expectLength(k, fn, "Y", Y, M * N, "M·N");
  expectLength(k, fn, "X", X, M * K, "M·K");
  expectLength(k, fn, "W", W, N * K, "N·K");
  checkNoOverlap(fn, ["Y", Y], [["X", X], ["W", W]]);
  run(k, "gemm_xwt", [Y.ptr, X.ptr, W.ptr, M, K, N], opts.accumulate ?? false, M, N, K);
}

/** dX = dY·W (+ dX with accumulate). dY is (M,N), W is (N,K), dX is (M,K). */
export function gemmDyW(
  k: Kernels,
  dX: F32,
  dY: F32,
  W: F32,
  M: number,
  N: number,
  K: number,
  opts: GemmOptions = {},
): void {
  const fn = "gemmDyW";
  expectDims(fn, { M, N, K });
  expectLength(k, fn, "dX", dX, M * K, "M·K");
  expectLength(k, fn, "dY", dY, M * N, "M·N");
  expectLength(k, fn, "W", W, N * K, "N·K");
  checkNoOverlap(fn, ["dX", dX], [["dY", dY], ["W", W]]);
  run(k, "gemm_dyw", [dX.ptr, dY.ptr, W.ptr, M, N, K], opts.accumulate ?? false, M, K, N);
}

/** dW = dYᵀ·X (+ dW with accumulate). dY is (M,N), X is (M,K), dW is (N,K). */
export function gemmDyTX(
  k: Kernels,
  dW: F32,
  dY: F32,
  X: F32,
  M: number,
  N: number,
  K: number,
  opts: GemmOptions = {},
): void {
  const fn = "gemmDyTX";
  expectDims(fn, { M, N, K });
  expectLength(k, fn, "dW", dW, N * K, "N·K");
  expectLength(k, fn, "dY", dY, M * N, "M·N");
  expectLength(k, fn, "X", X, M * K, "M·K");
  checkNoOverlap(fn, ["dW", dW], [["dY", dY], ["X", X]]);
  run(k, "gemm_dytx", [dW.ptr, dY.ptr, X.ptr, M, N, K], opts.accumulate ?? false, N, K, M);
}
