// LoRA adapter pair on one projection, row-major f32. Fixed names for the file:
//   M rows (tokens), IN input features, R rank, OUT output features, s scale.
//   X (M,IN), A (R,IN), B (OUT,R), XA (M,R), ΔY (M,OUT), G = ∂L/∂ΔY (M,OUT).
// forward:  XA = X·Aᵀ (kept for backward), ΔY [+]= s·XA·Bᵀ
// backward: GB = s·G·B (scratch), dB [+]= s·Gᵀ·XA, dA [+]= GBᵀ·X, dX [+]= GB·A
//
// Each export works on `rows` consecutive rows whose pointers the host has
// already offset (so threads take row ranges); dA and dB then hold this
// range's share of the sum over rows, which the host adds up across threads.
// The small operands (A, B, in the layout each product wants) are packed
// once per call; the rows are processed in blocks so that a block of G is
// still in L2 when the second product over it runs, and XA or GB of a block
// is still in L1 when it is used.
import {
  gemmAny, gemmScratchBytes, gemmTN, NARROW, narrowBytes, narrowRows, OUTER_A_BYTES,
  outerPanelsBytes, outerRows, packNarrow, packOuterPanels, SHORT_P,
} from "./gemm";

/** Rows per block: about 512 KiB of the widest row-major operand, a multiple of 6. */
// @ts-ignore: decorator
@inline function blockRows(width: i32): i32 {
  return max(12, min(384, (131072 / max(width, 1)) / 6 * 6));
}

// @ts-ignore: decorator
@inline function align64(n: i32): i32 {
  return (n + 63) & ~63;
}

/** Bytes of scratch one thread needs for lora_forward and lora_backward on `rows` rows. */
export function lora_scratch_bytes(rows: i32, IN: i32, R: i32, OUT: i32): i32 {
  const bb = min(rows, blockRows(max(IN, OUT)));
  // forward: packed A (narrow) + packed B panels + A panel, or gemm fallback
  let fwd = align64(narrowBytes(R, IN)) + align64(outerPanelsBytes(OUT, R)) + OUTER_A_BYTES;
  fwd = max(fwd, gemmScratchBytes(rows, R, IN, true));
  fwd = max(fwd, gemmScratchBytes(rows, OUT, R, true));
  // backward: packed B (narrow) + packed A panels + A panel + GB block + gemm fallback
  let bwd = align64(narrowBytes(R, OUT)) + align64(outerPanelsBytes(IN, R)) + OUTER_A_BYTES;
  bwd += align64(bb * R * 4);
  bwd += max(gemmScratchBytes(bb, R, OUT, true), gemmScratchBytes(bb, IN, R, true));
  return max(fwd, bwd) + 128;
}

/**
 * XA (rows,R) = X·Aᵀ and ΔY (rows,OUT) [+]= s·XA·Bᵀ for X (rows,IN),
 * A (R,IN), B (OUT,R).
 */
export function lora_forward(
  dy: usize, xa: usize, x: usize, a: usize, b: usize, rows: i32, IN: i32, R: i32, OUT: i32,
  scale: f32, accumulate: i32, scratch: usize,
): void {
  if (rows <= 0) return;
  const acc = accumulate != 0;
  scratch = (scratch + 63) & ~(<usize>63);
  if (R > NARROW || R > SHORT_P) {
    // Wide ranks: two general products.
    gemmAny(xa, R, x, IN, 1, a, IN, 1, rows, R, IN, 1, false, scratch, rows, R);
    gemmAny(dy, OUT, xa, R, 1, b, R, 1, rows, OUT, R, scale, acc, scratch, rows, OUT);
    return;
  }
  const packedA = scratch;
  const panelsB = packedA + <usize>align64(narrowBytes(R, IN));
  const panelA = panelsB + <usize>align64(outerPanelsBytes(OUT, R));
  // A as the narrow product's B operand (j = r, p = k): rows of A.
  packNarrow(packedA, a, IN, 1, R, IN, 1);
  // B as the outer product's B operand (j = o, p = r): rows of B, times s.
  packOuterPanels(panelsB, b, R, 1, OUT, R, scale);
  const fb = blockRows(IN);
  for (let m0 = 0; m0 < rows; m0 += fb) {
    const n = min(fb, rows - m0);
    const xam = xa + <usize>m0 * <usize>R * 4;
    narrowRows(xam, R, x + <usize>m0 * <usize>IN * 4, IN, packedA, n, R, IN, false);
    outerRows(dy + <usize>m0 * <usize>OUT * 4, OUT, xam, R, 1, panelsB, n, OUT, R, acc, panelA);
  }
}

/**
 * Given G (rows,OUT), X (rows,IN), XA (rows,R), A (R,IN), B (OUT,R):
 * dB (OUT,R) [+]= s·Gᵀ·XA, dA (R,IN) [+]= s·(G·B)ᵀ·X, dX (rows,IN) [+]= s·(G·B)·A.
 * flags: 1 = accumulate into dA and dB, 2 = accumulate into dX, 4 = no dX (dx is not touched:
 * nothing upstream needs the input's gradient).
 */
export function lora_backward(
  dx: usize, da: usize, db: usize, g: usize, x: usize, xa: usize, a: usize, b: usize,
  rows: i32, IN: i32, R: i32, OUT: i32, scale: f32, flags: i32, scratch: usize,
): void {
  const accG = (flags & 1) != 0, accX = (flags & 2) != 0, noX = (flags & 4) != 0;
  if (rows <= 0) {
    // No rows: the gradients of this share are zero.
    if (!accG) {
      memory.fill(da, 0, <usize>R * <usize>IN * 4);
      memory.fill(db, 0, <usize>OUT * <usize>R * 4);
    }
    return;
  }
  scratch = (scratch + 63) & ~(<usize>63);
  const packedB = scratch;
  const panelsA = packedB + <usize>align64(narrowBytes(R, OUT));
  const panelA = panelsA + <usize>align64(outerPanelsBytes(IN, R));
  const bb = blockRows(max(IN, OUT));
  const gb = panelA + <usize>OUTER_A_BYTES;
  const general = gb + <usize>align64(min(rows, bb) * R * 4);
  const narrow = R <= NARROW, short = R <= SHORT_P;
  // B as the narrow product's B operand (j = r, p = o): columns of B, times s.
  if (narrow) packNarrow(packedB, b, 1, R, R, OUT, scale);
  // A as the outer product's B operand (j = k, p = r): columns of A.
  if (short && !noX) packOuterPanels(panelsA, a, 1, IN, IN, R, 1);
  for (let m0 = 0; m0 < rows; m0 += bb) {
    const n = min(bb, rows - m0);
    const gm = g + <usize>m0 * <usize>OUT * 4, xm = x + <usize>m0 * <usize>IN * 4;
    const more = m0 > 0;
    // GB (n,R) = s·G·B
    if (narrow) narrowRows(gb, R, gm, OUT, packedB, n, R, OUT, false);
    else gemmAny(gb, R, gm, OUT, 1, b, 1, R, n, R, OUT, scale, false, general, n, R);
    // dB (OUT,R) [+]= s·Gᵀ·XA, while this block of G is still cached
    gemmTN(db, R, gm, OUT, xa + <usize>m0 * <usize>R * 4, R, OUT, R, n, scale, accG || more);
    // dA (R,IN) [+]= GBᵀ·X
    gemmTN(da, IN, gb, R, xm, IN, R, IN, n, 1, accG || more);
    if (noX) continue;
    // dX (n,IN) [+]= GB·A
    const dxm = dx + <usize>m0 * <usize>IN * 4;
    if (short) outerRows(dxm, IN, gb, R, 1, panelsA, n, IN, R, accX, panelA);
    else gemmAny(dxm, IN, gb, R, 1, a, 1, IN, n, IN, R, 1, accX, general, n, IN);
  }
}
