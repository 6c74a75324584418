// GEMM: C (rows×cols) [+]= alpha · Σ_p A(i,p)·B(j,p), row-major f32.
//
// The three layouts a linear layer needs (M tokens, K in, N out):
//   gemm_xwt:  Y  = X·Wᵀ   X (M,K), W (N,K), Y (M,N)    forward
//   gemm_dyw:  dX = dY·W   dY (M,N), W (N,K), dX (M,K)  input gradient
//   gemm_dytx: dW = dYᵀ·X  dY (M,N), X (M,K), dW (N,K)  weight gradient
// Each computes the block [i0,i1)×[j0,j1) of its output, so the host can split
// the work over threads, and packs into a scratch area (gemm_scratch_bytes)
// that belongs to the calling thread.
//
// Design (BLIS-style, shaped by what V8 makes of wasm). Without a trap handler
// (Deno) V8 bounds-checks every load with a few instructions, so the kernels
// are built to do few loads per FMA, nearly all full v128:
// - dot form, the main path: a 3×3 tile of C is nine 4-lane partial dot
//   products over p, reduced once at the end. Both operands are packed into
//   slivers of 3 rows laid out [p/4][3][4], so transposed layouts are
//   transposed while packing and one micro-kernel serves all of them. Per 4
//   steps of p: 6 loads, 9 FMAs, 13 of V8's 15 allocatable xmm registers.
// - narrow C (LoRA's X·Aᵀ, N = r) with A stored by rows: A is read in place
//   (the big operand is never copied) by a 6×8 broadcast tile, or a 2×4 dot
//   tile for widths that are not near a multiple of 8; B packed once.
// - short reduction (LoRA's ·Bᵀ, K = r): an outer-product 6×8 tile, A packed
//   [p][6] for broadcasts, B packed [p][8].
// alpha is folded into packed B, so no micro-kernel keeps a scalar live.
// Micro-kernel loops do two or four steps per iteration with an exit test
// after each. The exits keep binaryen from fusing unrolled steps into long
// expression trees (which V8 then spills); the unrolling spreads V8's
// per-iteration cost (interrupt check, index zero-extension, and in the
// shared-memory build a reload of the memory size for the bounds checks)
// over several steps.
import { madd } from "./common";

// ---------------------------------------------------------------------------
// Block sizes. A 3-row dot sliver over KC steps is 12 KiB (B's stays in L1);
// an A panel MC × KC is 384 KiB (L2); a B panel NC × KC lives in L3.

/** Reduction block (multiple of 4). */
const KC: i32 = 1024;
/** Rows of A per packed panel (multiple of 3). */
const MC: i32 = 96;
/** Columns of B per packed panel (multiple of 3). */
const NC: i32 = 1536;
/** Outer-product tile. */
const OMR: i32 = 6;
const ONR: i32 = 8;
/** Reductions up to this length take the outer-product path. */
export const SHORT_P: i32 = 32;
/** Outputs up to this many columns (with A stored by rows) take the narrow path. */
export const NARROW: i32 = 64;
/** Target reduction block of the narrow path's outer form (see narrowBlock). */
const KCN: i32 = 512;
/** Reduction block of gemmTN (operand slices of a tile stay in L1). */
const TNB: i32 = 256;

/**
 * Bytes of scratch one thread needs for a rows×cols block over `inner` steps;
 * aByRows: 1 for gemm_xwt and gemm_dyw (their A is stored by rows), 0 for gemm_dytx.
 */
export function gemm_scratch_bytes(rows: i32, cols: i32, inner: i32, aByRows: i32): i32 {
  return gemmScratchBytes(rows, cols, inner, aByRows != 0);
}

// @ts-ignore: decorator
@inline function ceilTo(n: i32, m: i32): i32 {
  return ((n + m - 1) / m) * m;
}

// ---------------------------------------------------------------------------
// Small helpers.

/** [Σa, Σb, Σc, Σd]. */
// @ts-ignore: decorator
@inline function sum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 1, 5), v128.shuffle<f32>(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 1, 5), v128.shuffle<f32>(c, d, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

/** The first n (0..4) floats at p, zeros after. */
// @ts-ignore: decorator
@inline function loadPartial(p: usize, n: i32): v128 {
  if (n >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  if (n > 0) v = v128.load32_zero(p);
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** C = v, or C += v when accumulating. */
// @ts-ignore: decorator
@inline function put(c: usize, v: f32, acc: bool): void {
  store<f32>(c, acc ? load<f32>(c) + v : v);
}

/** The first n (1..4) lanes of v into C (added when accumulating). */
// @ts-ignore: decorator
@inline function putLanes(c: usize, v: v128, n: i32, acc: bool): void {
  if (n >= 4) {
    v128.store(c, acc ? f32x4.add(v128.load(c), v) : v);
    return;
  }
  put(c, f32x4.extract_lane(v, 0), acc);
  if (n > 1) put(c + 4, f32x4.extract_lane(v, 1), acc);
  if (n > 2) put(c + 8, f32x4.extract_lane(v, 2), acc);
}

/** x[0..n) *= alpha. */
function scaleInPlace(x: usize, n: i32, alpha: f32): void {
  const va = f32x4.splat(alpha);
  const end = x + (<usize>n << 2);
  for (; x + 16 <= end; x += 16) v128.store(x, f32x4.mul(v128.load(x), va));
  for (; x < end; x += 4) store<f32>(x, load<f32>(x) * alpha);
}

// ---------------------------------------------------------------------------
// Packing for the dot form. A sliver holds R rows of an operand over kc
// reduction steps as [kq][R][4] (kq = ⌈kc/4⌉), zero-padded past kc and past
// the last row. Source element (r, p) is at src + 4(r·rs + p·ps); one of rs,
// ps is 1. R is a constant after inlining (3 or 4).

/** p-contiguous source (ps = 1): each row's 4 steps are one v128 copy. */
// @ts-ignore: decorator
@inline function packDotRowsR(dst: usize, src: usize, rs: i32, rows: i32, kc: i32, R: i32): void {
  const kfull = kc >> 2, tail = kc & 3;
  const ld = <usize>rs << 2;
  const z = f32x4.splat(0);
  for (let r0 = 0; r0 < rows; r0 += R) {
    for (let rr = 0; rr < R; rr++) {
      let d = dst + <usize>rr * 16;
      if (r0 + rr >= rows) {
        for (let q = 0; q < kfull + (tail ? 1 : 0); q++) {
          v128.store(d, z);
          d += R * 16;
        }
        continue;
      }
      let s = src + <usize>(r0 + rr) * ld;
      for (let q = 0; q < kfull; q++) {
        v128.store(d, v128.load(s));
        d += R * 16;
        s += 16;
      }
      if (tail) v128.store(d, loadPartial(s, tail));
    }
    dst += <usize>(kfull + (tail ? 1 : 0)) * R * 16;
  }
}

/** Row-contiguous source (rs = 1): 4×4 transposes, twelve rows at a time. */
// @ts-ignore: decorator
@inline function packDotColsR(dst: usize, src: usize, ps: i32, rows: i32, kc: i32, R: i32): void {
  const kq = (kc + 3) >> 2;
  const ld = <usize>ps << 2;
  const sliver = <usize>kq * R * 16;
  const z = f32x4.splat(0);
  let r0 = 0;
  for (; r0 + 12 <= rows; r0 += 12) {
    const d0 = dst + <usize>(r0 / R) * sliver;
    let s = src + (<usize>r0 << 2);
    for (let q = 0; q < kq; q++) {
      const p = q << 2;
      const a0 = v128.load(s), a1 = v128.load(s, 16), a2 = v128.load(s, 32);
      let b0 = z, b1 = z, b2 = z, c0 = z, c1 = z, c2 = z, e0 = z, e1 = z, e2 = z;
      if (p + 1 < kc) {
        const t = s + ld;
        b0 = v128.load(t);
        b1 = v128.load(t, 16);
        b2 = v128.load(t, 32);
      }
      if (p + 2 < kc) {
        const t = s + 2 * ld;
        c0 = v128.load(t);
        c1 = v128.load(t, 16);
        c2 = v128.load(t, 32);
      }
      if (p + 3 < kc) {
        const t = s + 3 * ld;
        e0 = v128.load(t);
        e1 = v128.load(t, 16);
        e2 = v128.load(t, 32);
      }
      const o = d0 + <usize>q * R * 16;
      transposeStore(o, a0, b0, c0, e0, 0, sliver, R);
      transposeStore(o, a1, b1, c1, e1, 4, sliver, R);
      transposeStore(o, a2, b2, c2, e2, 8, sliver, R);
      s += 4 * ld;
    }
  }
  // The rest one value at a time, zero-padded to whole slivers.
  for (; r0 < rows; r0 += R) {
    const d0 = dst + <usize>(r0 / R) * sliver;
    for (let q = 0; q < kq; q++) {
      for (let rr = 0; rr < R; rr++) {
        const r = r0 + rr;
        const o = d0 + <usize>(q * R + rr) * 16;
        for (let t = 0; t < 4; t++) {
          const p = (q << 2) + t;
          const v: f32 = r < rows && p < kc ? load<f32>(src + (<usize>r + <usize>p * <usize>ps) * 4) : 0;
          store<f32>(o + <usize>t * 4, v);
        }
      }
    }
  }
}

/**
 * Lane l of a, b, c, d holds steps p..p+3 of row first+l (rows counted from
 * a sliver boundary); each row's 4 steps go to its place in its sliver.
 */
// @ts-ignore: decorator
@inline function transposeStore(
  o: usize, a: v128, b: v128, c: v128, d: v128, first: i32, sliver: usize, R: i32,
): void {
  const t0 = v128.shuffle<f32>(a, b, 0, 4, 1, 5), t1 = v128.shuffle<f32>(c, d, 0, 4, 1, 5);
  const t2 = v128.shuffle<f32>(a, b, 2, 6, 3, 7), t3 = v128.shuffle<f32>(c, d, 2, 6, 3, 7);
  storeRow(o, v128.shuffle<f32>(t0, t1, 0, 1, 4, 5), first, sliver, R);
  storeRow(o, v128.shuffle<f32>(t0, t1, 2, 3, 6, 7), first + 1, sliver, R);
  storeRow(o, v128.shuffle<f32>(t2, t3, 0, 1, 4, 5), first + 2, sliver, R);
  storeRow(o, v128.shuffle<f32>(t2, t3, 2, 3, 6, 7), first + 3, sliver, R);
}

// @ts-ignore: decorator
@inline function storeRow(o: usize, v: v128, r: i32, sliver: usize, R: i32): void {
  v128.store(o + <usize>(r / R) * sliver + <usize>(r % R) * 16, v);
}

function packDotRows3(dst: usize, src: usize, rs: i32, rows: i32, kc: i32): void {
  packDotRowsR(dst, src, rs, rows, kc, 3);
}
function packDotCols3(dst: usize, src: usize, ps: i32, rows: i32, kc: i32): void {
  packDotColsR(dst, src, ps, rows, kc, 3);
}
function packDotRows4(dst: usize, src: usize, rs: i32, rows: i32, kc: i32): void {
  packDotRowsR(dst, src, rs, rows, kc, 4);
}
function packDotCols4(dst: usize, src: usize, ps: i32, rows: i32, kc: i32): void {
  packDotColsR(dst, src, ps, rows, kc, 4);
}

// ---------------------------------------------------------------------------
// Dot-form micro-kernels.

/** 3×3 tile from packed slivers pa, pb over kq ≥ 1 groups of 4 steps; mr×nr valid. */
function dot3x3(pa: usize, pb: usize, kq: i32, c: usize, ldc: usize, mr: i32, nr: i32, acc: bool): void {
  let c00 = f32x4.splat(0), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  let c20 = c00, c21 = c00, c22 = c00;
  const end = pa + <usize>kq * 48;
  // Two steps per iteration (see the note on loops at the top; four are no faster here).
  let a0: v128, a1: v128, a2: v128, b: v128;
  for (;;) {
    a0 = v128.load(pa);
    a1 = v128.load(pa, 16);
    a2 = v128.load(pa, 32);
    b = v128.load(pb);
    c00 = madd(a0, b, c00);
    c10 = madd(a1, b, c10);
    c20 = madd(a2, b, c20);
    b = v128.load(pb, 16);
    c01 = madd(a0, b, c01);
    c11 = madd(a1, b, c11);
    c21 = madd(a2, b, c21);
    b = v128.load(pb, 32);
    c02 = madd(a0, b, c02);
    c12 = madd(a1, b, c12);
    c22 = madd(a2, b, c22);
    pa += 48;
    pb += 48;
    if (pa >= end) break;
    a0 = v128.load(pa);
    a1 = v128.load(pa, 16);
    a2 = v128.load(pa, 32);
    b = v128.load(pb);
    c00 = madd(a0, b, c00);
    c10 = madd(a1, b, c10);
    c20 = madd(a2, b, c20);
    b = v128.load(pb, 16);
    c01 = madd(a0, b, c01);
    c11 = madd(a1, b, c11);
    c21 = madd(a2, b, c21);
    b = v128.load(pb, 32);
    c02 = madd(a0, b, c02);
    c12 = madd(a1, b, c12);
    c22 = madd(a2, b, c22);
    pa += 48;
    pb += 48;
    if (pa >= end) break;
  }
  // Sums in tile order: s0 = [00 01 02 10], s1 = [11 12 20 21], then 22.
  const s0 = sum4(c00, c01, c02, c10), s1 = sum4(c11, c12, c20, c21);
  const s22 = f32x4.extract_lane(sum4(c22, c22, c22, c22), 0);
  if (mr == 3 && nr == 3) {
    put(c, f32x4.extract_lane(s0, 0), acc);
    put(c + 4, f32x4.extract_lane(s0, 1), acc);
    put(c + 8, f32x4.extract_lane(s0, 2), acc);
    put(c + ldc, f32x4.extract_lane(s0, 3), acc);
    put(c + ldc + 4, f32x4.extract_lane(s1, 0), acc);
    put(c + ldc + 8, f32x4.extract_lane(s1, 1), acc);
    put(c + 2 * ldc, f32x4.extract_lane(s1, 2), acc);
    put(c + 2 * ldc + 4, f32x4.extract_lane(s1, 3), acc);
    put(c + 2 * ldc + 8, s22, acc);
    return;
  }
  put(c, f32x4.extract_lane(s0, 0), acc);
  if (nr > 1) put(c + 4, f32x4.extract_lane(s0, 1), acc);
  if (nr > 2) put(c + 8, f32x4.extract_lane(s0, 2), acc);
  if (mr > 1) {
    put(c + ldc, f32x4.extract_lane(s0, 3), acc);
    if (nr > 1) put(c + ldc + 4, f32x4.extract_lane(s1, 0), acc);
    if (nr > 2) put(c + ldc + 8, f32x4.extract_lane(s1, 1), acc);
  }
  if (mr > 2) {
    put(c + 2 * ldc, f32x4.extract_lane(s1, 2), acc);
    if (nr > 1) put(c + 2 * ldc + 4, f32x4.extract_lane(s1, 3), acc);
    if (nr > 2) put(c + 2 * ldc + 8, s22, acc);
  }
}

/**
 * 2×4 tile with A read in place from rows a0, a1 (the caller passes a0 twice
 * when mr = 1) over kc ≥ 1 steps; B is a 4-row packed sliver.
 */
function dot2x4(a0: usize, a1: usize, pb: usize, kc: i32, c: usize, ldc: usize, mr: i32, nr: i32, acc: bool): void {
  let c00 = f32x4.splat(0), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  const end = a0 + (<usize>(kc >> 2) << 4);
  let x0: v128, x1: v128, b: v128;
  if (a0 < end) {
    for (;;) {
      x0 = v128.load(a0);
      x1 = v128.load(a1);
      b = v128.load(pb);
      c00 = madd(x0, b, c00);
      c10 = madd(x1, b, c10);
      b = v128.load(pb, 16);
      c01 = madd(x0, b, c01);
      c11 = madd(x1, b, c11);
      b = v128.load(pb, 32);
      c02 = madd(x0, b, c02);
      c12 = madd(x1, b, c12);
      b = v128.load(pb, 48);
      c03 = madd(x0, b, c03);
      c13 = madd(x1, b, c13);
      a0 += 16;
      a1 += 16;
      pb += 64;
      if (a0 >= end) break;
      x0 = v128.load(a0);
      x1 = v128.load(a1);
      b = v128.load(pb);
      c00 = madd(x0, b, c00);
      c10 = madd(x1, b, c10);
      b = v128.load(pb, 16);
      c01 = madd(x0, b, c01);
      c11 = madd(x1, b, c11);
      b = v128.load(pb, 32);
      c02 = madd(x0, b, c02);
      c12 = madd(x1, b, c12);
      b = v128.load(pb, 48);
      c03 = madd(x0, b, c03);
      c13 = madd(x1, b, c13);
      a0 += 16;
      a1 += 16;
      pb += 64;
      if (a0 >= end) break;
      x0 = v128.load(a0);
      x1 = v128.load(a1);
      b = v128.load(pb);
      c00 = madd(x0, b, c00);
      c10 = madd(x1, b, c10);
      b = v128.load(pb, 16);
      c01 = madd(x0, b, c01);
      c11 = madd(x1, b, c11);
      b = v128.load(pb, 32);
      c02 = madd(x0, b, c02);
      c12 = madd(x1, b, c12);
      b = v128.load(pb, 48);
      c03 = madd(x0, b, c03);
      c13 = madd(x1, b, c13);
      a0 += 16;
      a1 += 16;
      pb += 64;
      if (a0 >= end) break;
      x0 = v128.load(a0);
      x1 = v128.load(a1);
      b = v128.load(pb);
      c00 = madd(x0, b, c00);
      c10 = madd(x1, b, c10);
      b = v128.load(pb, 16);
      c01 = madd(x0, b, c01);
      c11 = madd(x1, b, c11);
      b = v128.load(pb, 32);
      c02 = madd(x0, b, c02);
      c12 = madd(x1, b, c12);
      b = v128.load(pb, 48);
      c03 = madd(x0, b, c03);
      c13 = madd(x1, b, c13);
      a0 += 16;
      a1 += 16;
      pb += 64;
      if (a0 >= end) break;
    }
  }
  const tail = kc & 3;
  if (tail) {
    const x0 = loadPartial(a0, tail), x1 = loadPartial(a1, tail);
    let b = v128.load(pb);
    c00 = madd(x0, b, c00);
    c10 = madd(x1, b, c10);
    b = v128.load(pb, 16);
    c01 = madd(x0, b, c01);
    c11 = madd(x1, b, c11);
    b = v128.load(pb, 32);
    c02 = madd(x0, b, c02);
    c12 = madd(x1, b, c12);
    b = v128.load(pb, 48);
    c03 = madd(x0, b, c03);
    c13 = madd(x1, b, c13);
  }
  putLanes(c, sum4(c00, c01, c02, c03), nr, acc);
  if (mr > 1) putLanes(c + ldc, sum4(c10, c11, c12, c13), nr, acc);
}

// ---------------------------------------------------------------------------
// Outer-product form for a short reduction. A panel [kc][6], B panel [kc][8].

/** Rows [0, rows ≤ 6) of operand (src, rs, ps) as one panel [kc][6]. */
function packOuterA(dst: usize, src: usize, rs: i32, ps: i32, rows: i32, kc: i32): void {
  const rsb = <usize>rs << 2, psb = <usize>ps << 2;
  for (let p = 0; p < kc; p++) {
    let s = src + <usize>p * psb;
    for (let rr = 0; rr < OMR; rr++) {
      store<f32>(dst, rr < rows ? load<f32>(s) : 0);
      s += rsb;
      dst += 4;
    }
  }
}

/** Columns [0, cols) of operand (src, rs, ps) as 8-column panels [kc][8]. */
function packOuterB(dst: usize, src: usize, rs: i32, ps: i32, cols: i32, kc: i32): void {
  const rsb = <usize>rs << 2, psb = <usize>ps << 2;
  for (let j0 = 0; j0 < cols; j0 += ONR) {
    const n = min(ONR, cols - j0);
    for (let p = 0; p < kc; p++) {
      const s = src + <usize>j0 * rsb + <usize>p * psb;
      if (n == ONR && rs == 1) {
        v128.store(dst, v128.load(s));
        v128.store(dst, v128.load(s, 16), 16);
      } else {
        for (let jj = 0; jj < ONR; jj++) {
          store<f32>(dst + <usize>jj * 4, jj < n ? load<f32>(s + <usize>jj * rsb) : 0);
        }
      }
      dst += ONR * 4;
    }
  }
}

// @ts-ignore: decorator
@inline function putRow8(c: usize, lo: v128, hi: v128, nr: i32, acc: bool): void {
  putLanes(c, lo, nr, acc);
  if (nr > 4) putLanes(c + 16, hi, nr - 4, acc);
}

/** 6×8 tile from panels pa ([kc][6]) and pb ([kc][8]), kc ≥ 1; mr×nr valid. */
function outer6x8(pa: usize, pb: usize, kc: i32, c: usize, ldc: usize, mr: i32, nr: i32, acc: bool): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  let c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const end = pb + (<usize>kc << 5);
  let b0: v128, b1: v128, s: v128;
  for (;;) {
    b0 = v128.load(pb);
    b1 = v128.load(pb, 16);
    s = v128.load32_splat(pa);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(pa + 4);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(pa + 8);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(pa + 12);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
    s = v128.load32_splat(pa + 16);
    c40 = madd(s, b0, c40);
    c41 = madd(s, b1, c41);
    s = v128.load32_splat(pa + 20);
    c50 = madd(s, b0, c50);
    c51 = madd(s, b1, c51);
    pa += 24;
    pb += 32;
    if (pb >= end) break;
    b0 = v128.load(pb);
    b1 = v128.load(pb, 16);
    s = v128.load32_splat(pa);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(pa + 4);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(pa + 8);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(pa + 12);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
    s = v128.load32_splat(pa + 16);
    c40 = madd(s, b0, c40);
    c41 = madd(s, b1, c41);
    s = v128.load32_splat(pa + 20);
    c50 = madd(s, b0, c50);
    c51 = madd(s, b1, c51);
    pa += 24;
    pb += 32;
    if (pb >= end) break;
    b0 = v128.load(pb);
    b1 = v128.load(pb, 16);
    s = v128.load32_splat(pa);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(pa + 4);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(pa + 8);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(pa + 12);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
    s = v128.load32_splat(pa + 16);
    c40 = madd(s, b0, c40);
    c41 = madd(s, b1, c41);
    s = v128.load32_splat(pa + 20);
    c50 = madd(s, b0, c50);
    c51 = madd(s, b1, c51);
    pa += 24;
    pb += 32;
    if (pb >= end) break;
    b0 = v128.load(pb);
    b1 = v128.load(pb, 16);
    s = v128.load32_splat(pa);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(pa + 4);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(pa + 8);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(pa + 12);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
    s = v128.load32_splat(pa + 16);
    c40 = madd(s, b0, c40);
    c41 = madd(s, b1, c41);
    s = v128.load32_splat(pa + 20);
    c50 = madd(s, b0, c50);
    c51 = madd(s, b1, c51);
    pa += 24;
    pb += 32;
    if (pb >= end) break;
  }
  putRow8(c, c00, c01, nr, acc);
  if (mr > 1) putRow8(c + ldc, c10, c11, nr, acc);
  if (mr > 2) putRow8(c + 2 * ldc, c20, c21, nr, acc);
  if (mr > 3) putRow8(c + 3 * ldc, c30, c31, nr, acc);
  if (mr > 4) putRow8(c + 4 * ldc, c40, c41, nr, acc);
  if (mr > 5) putRow8(c + 5 * ldc, c50, c51, nr, acc);
}

/**
 * 6×8 tile like outer6x8, but with A read in place: rows at a, a+o1, …, a+o5
 * (byte offsets; missing rows repeat row 0), kc ≥ 1 steps along the rows.
 */
function outerInPlace(
  a: usize, o1: usize, o2: usize, o3: usize, o4: usize, o5: usize, pb: usize, kc: i32,
  c: usize, ldc: usize, mr: i32, nr: i32, acc: bool,
): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  let c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const end = pb + (<usize>kc << 5);
  let b0: v128, b1: v128, s: v128;
  for (;;) {
    b0 = v128.load(pb);
    b1 = v128.load(pb, 16);
    s = v128.load32_splat(a);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(a + o1);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(a + o2);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(a + o3);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
    s = v128.load32_splat(a + o4);
    c40 = madd(s, b0, c40);
    c41 = madd(s, b1, c41);
    s = v128.load32_splat(a + o5);
    c50 = madd(s, b0, c50);
    c51 = madd(s, b1, c51);
    a += 4;
    pb += 32;
    if (pb >= end) break;
    b0 = v128.load(pb);
    b1 = v128.load(pb, 16);
    s = v128.load32_splat(a);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(a + o1);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(a + o2);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(a + o3);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
    s = v128.load32_splat(a + o4);
    c40 = madd(s, b0, c40);
    c41 = madd(s, b1, c41);
    s = v128.load32_splat(a + o5);
    c50 = madd(s, b0, c50);
    c51 = madd(s, b1, c51);
    a += 4;
    pb += 32;
    if (pb >= end) break;
    b0 = v128.load(pb);
    b1 = v128.load(pb, 16);
    s = v128.load32_splat(a);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(a + o1);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(a + o2);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(a + o3);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
    s = v128.load32_splat(a + o4);
    c40 = madd(s, b0, c40);
    c41 = madd(s, b1, c41);
    s = v128.load32_splat(a + o5);
    c50 = madd(s, b0, c50);
    c51 = madd(s, b1, c51);
    a += 4;
    pb += 32;
    if (pb >= end) break;
    b0 = v128.load(pb);
    b1 = v128.load(pb, 16);
    s = v128.load32_splat(a);
    c00 = madd(s, b0, c00);
    c01 = madd(s, b1, c01);
    s = v128.load32_splat(a + o1);
    c10 = madd(s, b0, c10);
    c11 = madd(s, b1, c11);
    s = v128.load32_splat(a + o2);
    c20 = madd(s, b0, c20);
    c21 = madd(s, b1, c21);
    s = v128.load32_splat(a + o3);
    c30 = madd(s, b0, c30);
    c31 = madd(s, b1, c31);
    s = v128.load32_splat(a + o4);
    c40 = madd(s, b0, c40);
    c41 = madd(s, b1, c41);
    s = v128.load32_splat(a + o5);
    c50 = madd(s, b0, c50);
    c51 = madd(s, b1, c51);
    a += 4;
    pb += 32;
    if (pb >= end) break;
  }
  putRow8(c, c00, c01, nr, acc);
  if (mr > 1) putRow8(c + ldc, c10, c11, nr, acc);
  if (mr > 2) putRow8(c + 2 * ldc, c20, c21, nr, acc);
  if (mr > 3) putRow8(c + 3 * ldc, c30, c31, nr, acc);
  if (mr > 4) putRow8(c + 4 * ldc, c40, c41, nr, acc);
  if (mr > 5) putRow8(c + 5 * ldc, c50, c51, nr, acc);
}

// ---------------------------------------------------------------------------
// Drivers. A(i,p) at a + 4(i·ars + p·aps), B(j,p) at b + 4(j·brs + p·bps);
// C (rows×cols) with row stride ldc floats. The narrow and outer paths are
// split into "pack B" and "run rows" so that LoRA can pack its small
// operands once and run blocks of rows against them.

/** Bytes of packOuterPanels(cols, inner). */
export function outerPanelsBytes(cols: i32, inner: i32): i32 {
  return ceilTo(cols, ONR) * inner * 4;
}

/** B (cols × inner) as 8-column panels [inner][8], times alpha. */
export function packOuterPanels(dst: usize, b: usize, brs: i32, bps: i32, cols: i32, inner: i32, alpha: f32): void {
  packOuterB(dst, b, brs, bps, cols, inner);
  if (alpha != 1) scaleInPlace(dst, ceilTo(cols, ONR) * inner, alpha);
}

/** Bytes of the A panel outerRows needs. */
export const OUTER_A_BYTES: i32 = OMR * SHORT_P * 4;

/**
 * C [+]= A·Bᵀ for a short reduction (inner ≤ SHORT_P) with B from
 * packOuterPanels; pa is room for one 6-row A panel (OUTER_A_BYTES).
 */
export function outerRows(
  c: usize, ldc: i32, a: usize, ars: i32, aps: i32, pb: usize,
  rows: i32, cols: i32, inner: i32, acc: bool, pa: usize,
): void {
  const ldcb = <usize>ldc << 2, panel = <usize>inner * ONR * 4;
  for (let i0 = 0; i0 < rows; i0 += OMR) {
    const mr = min(OMR, rows - i0);
    packOuterA(pa, a + <usize>i0 * <usize>ars * 4, ars, aps, mr, inner);
    let cc = c + <usize>i0 * ldcb, pj = pb;
    for (let j0 = 0; j0 < cols; j0 += ONR) {
      outer6x8(pa, pj, inner, cc, ldcb, mr, min(ONR, cols - j0), acc);
      cc += ONR * 4;
      pj += panel;
    }
  }
}

// Narrow C (cols ≤ NARROW) with A stored by rows: A is read in place, never
// copied, and only B (small) is packed, once per call. Two forms:
// - outer: 6 rows of A × 8 columns, broadcasting A from its rows and loading
//   B from [p][8] panels. Each element of A is loaded once per 8 columns, so
//   A streams in few passes, which is what matters when it comes from DRAM
//   and there are few column tiles to share the cost of the first one (a
//   rank-wide output). Used for widths up to 32 near a multiple of 8 and
//   long reductions.
// - dot: 2 rows × 4 columns of 4-lane dot products over 4-row B slivers,
//   blocked like the packed path, so it sums in exactly the packed path's
//   order: a short projection gives the same bits computed on its own as
//   inside a wider fused one (small models, tests).

/** The outer form serves widths up to this and reductions from NARROW_OUTER_P. */
const NARROW_OUTER_COLS: i32 = 32;
const NARROW_OUTER_P: i32 = 256;

// @ts-ignore: decorator
@inline function narrowIsOuter(cols: i32, inner: i32): bool {
  return cols <= NARROW_OUTER_COLS && inner >= NARROW_OUTER_P && ceilTo(cols, ONR) == ceilTo(cols, 4);
}

/**
 * The outer form's reduction block: about KCN steps, the reduction cut into
 * equal blocks (multiples of 4). Partial sums go to C once per block, and the
 * block of A that the column tiles of a row group share stays in L1.
 */
// @ts-ignore: decorator
@inline function narrowBlock(inner: i32): i32 {
  const blocks = max(1, (inner + KCN / 2) / KCN);
  return ceilTo((inner + blocks - 1) / blocks, 4);
}

/** Bytes of packNarrow(cols, inner). */
export function narrowBytes(cols: i32, inner: i32): i32 {
  return narrowIsOuter(cols, inner) ? outerPanelsBytes(cols, inner) : ceilTo(cols, 4) * ceilTo(inner, 4) * 4;
}

/**
 * B (cols × inner) for narrowRows, times alpha: 8-column panels [inner][8]
 * (outer form), or per KC block of the reduction 4-row dot slivers (block p0
 * starts at byte 4·ceil4(cols)·p0).
 */
export function packNarrow(dst: usize, b: usize, brs: i32, bps: i32, cols: i32, inner: i32, alpha: f32): void {
  if (narrowIsOuter(cols, inner)) {
    packOuterPanels(dst, b, brs, bps, cols, inner, alpha);
    return;
  }
  const c4 = <usize>ceilTo(cols, 4);
  for (let p0 = 0; p0 < inner; p0 += KC) {
    const kc = min(KC, inner - p0);
    const d = dst + c4 * <usize>p0 * 4, src = b + <usize>p0 * <usize>bps * 4;
    if (bps == 1) packDotRows4(d, src, brs, cols, kc);
    else packDotCols4(d, src, bps, cols, kc);
  }
  if (alpha != 1) scaleInPlace(dst, <i32>c4 * ceilTo(inner, 4), alpha);
}

/** C [+]= A·Bᵀ with A stored by rows (stride ars) read in place, B from packNarrow. */
export function narrowRows(
  c: usize, ldc: i32, a: usize, ars: i32, pb: usize, rows: i32, cols: i32, inner: i32, acc: bool,
): void {
  const ldcb = <usize>ldc << 2, lda = <usize>ars << 2;
  if (narrowIsOuter(cols, inner)) {
    const kcn = narrowBlock(inner);
    const panel = <usize>inner * ONR * 4;
    for (let i0 = 0; i0 < rows; i0 += OMR) {
      // Missing rows of the last group re-read the group's first row.
      const mr = min(OMR, rows - i0);
      const o1: usize = mr > 1 ? lda : 0, o2: usize = mr > 2 ? 2 * lda : 0;
      const o3: usize = mr > 3 ? 3 * lda : 0, o4: usize = mr > 4 ? 4 * lda : 0;
      const o5: usize = mr > 5 ? 5 * lda : 0;
      const ar = a + <usize>i0 * lda, crow = c + <usize>i0 * ldcb;
      for (let p0 = 0; p0 < inner; p0 += kcn) {
        const kc = min(kcn, inner - p0);
        const accNow = acc || p0 > 0;
        let cc = crow, pj = pb + <usize>p0 * ONR * 4;
        for (let j0 = 0; j0 < cols; j0 += ONR) {
          outerInPlace(ar + <usize>p0 * 4, o1, o2, o3, o4, o5, pj, kc, cc, ldcb, mr, min(ONR, cols - j0), accNow);
          cc += ONR * 4;
          pj += panel;
        }
      }
    }
    return;
  }
  const c4 = <usize>ceilTo(cols, 4);
  for (let i0 = 0; i0 < rows; i0 += 2) {
    const mr = min(2, rows - i0);
    const r0 = a + <usize>i0 * lda;
    const r1 = mr > 1 ? r0 + lda : r0;
    const crow = c + <usize>i0 * ldcb;
    for (let p0 = 0; p0 < inner; p0 += KC) {
      const kc = min(KC, inner - p0);
      const sliver = <usize>((kc + 3) >> 2) * 64;
      const accNow = acc || p0 > 0;
      const o = <usize>p0 * 4;
      let cc = crow, pj = pb + c4 * o;
      for (let j0 = 0; j0 < cols; j0 += 4) {
        dot2x4(r0 + o, r1 + o, pj, kc, cc, ldcb, mr, min(4, cols - j0), accNow);
        cc += 16;
        pj += sliver;
      }
    }
  }
}

/** General case: both operands packed into 3-row slivers, blocked for the caches. */
function gemmPacked(
  c: usize, ldc: i32, a: usize, ars: i32, aps: i32, b: usize, brs: i32, bps: i32,
  rows: i32, cols: i32, inner: i32, alpha: f32, acc: bool, scratch: usize,
): void {
  const ldcb = <usize>ldc << 2;
  const pa = scratch;
  const pbBase = pa + <usize>ceilTo(min(rows, MC), 3) * <usize>((min(inner, KC) + 3) >> 2) * 16;
  for (let j0 = 0; j0 < cols; j0 += NC) {
    const nc = min(NC, cols - j0);
    for (let p0 = 0; p0 < inner; p0 += KC) {
      const kc = min(KC, inner - p0);
      const kq = (kc + 3) >> 2;
      const sliver = <usize>kq * 48;
      const bsrc = b + (<usize>j0 * <usize>brs + <usize>p0 * <usize>bps) * 4;
      if (bps == 1) packDotRows3(pbBase, bsrc, brs, nc, kc);
      else packDotCols3(pbBase, bsrc, bps, nc, kc);
      if (alpha != 1) scaleInPlace(pbBase, ceilTo(nc, 3) * kq * 4, alpha);
      const accNow = acc || p0 > 0;
      for (let i0 = 0; i0 < rows; i0 += MC) {
        const mc = min(MC, rows - i0);
        const asrc = a + (<usize>i0 * <usize>ars + <usize>p0 * <usize>aps) * 4;
        if (aps == 1) packDotRows3(pa, asrc, ars, mc, kc);
        else packDotCols3(pa, asrc, aps, mc, kc);
        let pb = pbBase;
        for (let jr = 0; jr < nc; jr += 3) {
          const nr = min(3, nc - jr);
          let cc = c + <usize>i0 * ldcb + <usize>(j0 + jr) * 4;
          let ps = pa;
          for (let ir = 0; ir < mc; ir += 3) {
            dot3x3(ps, pb, kq, cc, ldcb, min(3, mc - ir), nr, accNow);
            ps += sliver;
            cc += 3 * ldcb;
          }
          pb += sliver;
        }
      }
    }
  }
}

/**
 * C [+]= alpha·Σ_p A(i,p)·B(j,p) on a rows×cols block of an output whose
 * whole size is shapeRows×shapeCols. The path is picked from the whole size,
 * so that every block (whatever the thread split) sums in the same order and
 * results do not depend on the thread count. The scratch must hold
 * gemmScratchBytes(rows, cols, inner, aps == 1).
 */
export function gemmAny(
  c: usize, ldc: i32, a: usize, ars: i32, aps: i32, b: usize, brs: i32, bps: i32,
  rows: i32, cols: i32, inner: i32, alpha: f32, acc: bool, scratch: usize,
  shapeRows: i32, shapeCols: i32,
): void {
  if (rows <= 0 || cols <= 0) return;
  if (inner <= 0) {
    // Empty sum: C = 0, or unchanged when accumulating.
    if (!acc) {
      for (let i = 0; i < rows; i++) memory.fill(c + <usize>i * <usize>ldc * 4, 0, <usize>cols * 4);
    }
    return;
  }
  scratch = (scratch + 63) & ~(<usize>63);
  if (inner <= SHORT_P) {
    const pa = scratch + <usize>outerPanelsBytes(cols, inner);
    packOuterPanels(scratch, b, brs, bps, cols, inner, alpha);
    outerRows(c, ldc, a, ars, aps, scratch, rows, cols, inner, acc, pa);
  } else if (shapeCols <= NARROW && aps == 1) {
    // (Blocks of a narrow output are never cut by columns: cols == shapeCols.)
    packNarrow(scratch, b, brs, bps, cols, inner, alpha);
    narrowRows(c, ldc, a, ars, scratch, rows, cols, inner, acc);
  } else if (ars == 1 && brs == 1 && min(shapeRows, shapeCols) <= NARROW) {
    // Both operands by rows of the reduction and one side of C short (a LoRA
    // factor's gradient): transposing the long operand would cost more than
    // reading it in place.
    gemmTN(c, ldc, a, aps, b, bps, rows, cols, inner, alpha, acc);
  } else {
    gemmPacked(c, ldc, a, ars, aps, b, brs, bps, rows, cols, inner, alpha, acc, scratch);
  }
}

/** Bytes of scratch gemmAny needs for this problem (aByRows: aps = 1). */
export function gemmScratchBytes(rows: i32, cols: i32, inner: i32, aByRows: bool): i32 {
  const kq = (min(inner, KC) + 3) >> 2;
  const dot = (ceilTo(min(rows, MC), 3) + ceilTo(min(cols, NC), 3)) * kq * 16;
  const narrow = cols <= NARROW && aByRows ? narrowBytes(cols, inner) : 0;
  const outer = inner <= SHORT_P ? outerPanelsBytes(cols, inner) + OUTER_A_BYTES : 0;
  return max(max(dot, narrow), outer) + 64;
}

// ---------------------------------------------------------------------------
// Reduction over the rows of two row-major operands, read in place:
// C (rows×cols) [+]= alpha·Σ_m A[m, i]·B[m, j], A[m, i] at a + 4(m·lda + i),
// B[m, j] at b + 4(m·ldb + j). This is the weight-gradient layout (dYᵀ·X)
// without packing, for LoRA's gradients where one side of C is the rank:
// each step m is an outer product of a row piece of A and one of B.

/**
 * Tile of MR (6 or 4) rows × 4·NV (8 or 4) columns over `steps` rows m.
 * With MR = 4 the row offsets are variables, so that rows past the valid mr
 * re-read row 0 instead of reading past the matrix.
 */
// @ts-ignore: decorator
@inline function tnTile(
  a: usize, lda: usize, b: usize, ldb: usize, steps: i32, c: usize, ldc: usize, mr: i32, nr: i32,
  alphaBits: i32, acc: bool, MR: i32, NV: i32,
): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  let c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const o1: usize = mr > 1 ? 4 : 0, o2: usize = mr > 2 ? 8 : 0, o3: usize = mr > 3 ? 12 : 0;
  const end = a + <usize>steps * lda;
  let b0: v128, b1 = c00, s: v128;
  for (;;) {
    b0 = v128.load(b);
    if (NV > 1) b1 = v128.load(b, 16);
    s = v128.load32_splat(a);
    c00 = madd(s, b0, c00);
    if (NV > 1) c01 = madd(s, b1, c01);
    s = v128.load32_splat(a + (MR == 6 ? 4 : o1));
    c10 = madd(s, b0, c10);
    if (NV > 1) c11 = madd(s, b1, c11);
    s = v128.load32_splat(a + (MR == 6 ? 8 : o2));
    c20 = madd(s, b0, c20);
    if (NV > 1) c21 = madd(s, b1, c21);
    s = v128.load32_splat(a + (MR == 6 ? 12 : o3));
    c30 = madd(s, b0, c30);
    if (NV > 1) c31 = madd(s, b1, c31);
    if (MR == 6) {
      s = v128.load32_splat(a + 16);
      c40 = madd(s, b0, c40);
      if (NV > 1) c41 = madd(s, b1, c41);
      s = v128.load32_splat(a + 20);
      c50 = madd(s, b0, c50);
      if (NV > 1) c51 = madd(s, b1, c51);
    }
    a += lda;
    b += ldb;
    if (a >= end) break;
    b0 = v128.load(b);
    if (NV > 1) b1 = v128.load(b, 16);
    s = v128.load32_splat(a);
    c00 = madd(s, b0, c00);
    if (NV > 1) c01 = madd(s, b1, c01);
    s = v128.load32_splat(a + (MR == 6 ? 4 : o1));
    c10 = madd(s, b0, c10);
    if (NV > 1) c11 = madd(s, b1, c11);
    s = v128.load32_splat(a + (MR == 6 ? 8 : o2));
    c20 = madd(s, b0, c20);
    if (NV > 1) c21 = madd(s, b1, c21);
    s = v128.load32_splat(a + (MR == 6 ? 12 : o3));
    c30 = madd(s, b0, c30);
    if (NV > 1) c31 = madd(s, b1, c31);
    if (MR == 6) {
      s = v128.load32_splat(a + 16);
      c40 = madd(s, b0, c40);
      if (NV > 1) c41 = madd(s, b1, c41);
      s = v128.load32_splat(a + 20);
      c50 = madd(s, b0, c50);
      if (NV > 1) c51 = madd(s, b1, c51);
    }
    a += lda;
    b += ldb;
    if (a >= end) break;
    b0 = v128.load(b);
    if (NV > 1) b1 = v128.load(b, 16);
    s = v128.load32_splat(a);
    c00 = madd(s, b0, c00);
    if (NV > 1) c01 = madd(s, b1, c01);
    s = v128.load32_splat(a + (MR == 6 ? 4 : o1));
    c10 = madd(s, b0, c10);
    if (NV > 1) c11 = madd(s, b1, c11);
    s = v128.load32_splat(a + (MR == 6 ? 8 : o2));
    c20 = madd(s, b0, c20);
    if (NV > 1) c21 = madd(s, b1, c21);
    s = v128.load32_splat(a + (MR == 6 ? 12 : o3));
    c30 = madd(s, b0, c30);
    if (NV > 1) c31 = madd(s, b1, c31);
    if (MR == 6) {
      s = v128.load32_splat(a + 16);
      c40 = madd(s, b0, c40);
      if (NV > 1) c41 = madd(s, b1, c41);
      s = v128.load32_splat(a + 20);
      c50 = madd(s, b0, c50);
      if (NV > 1) c51 = madd(s, b1, c51);
    }
    a += lda;
    b += ldb;
    if (a >= end) break;
    b0 = v128.load(b);
    if (NV > 1) b1 = v128.load(b, 16);
    s = v128.load32_splat(a);
    c00 = madd(s, b0, c00);
    if (NV > 1) c01 = madd(s, b1, c01);
    s = v128.load32_splat(a + (MR == 6 ? 4 : o1));
    c10 = madd(s, b0, c10);
    if (NV > 1) c11 = madd(s, b1, c11);
    s = v128.load32_splat(a + (MR == 6 ? 8 : o2));
    c20 = madd(s, b0, c20);
    if (NV > 1) c21 = madd(s, b1, c21);
    s = v128.load32_splat(a + (MR == 6 ? 12 : o3));
    c30 = madd(s, b0, c30);
    if (NV > 1) c31 = madd(s, b1, c31);
    if (MR == 6) {
      s = v128.load32_splat(a + 16);
      c40 = madd(s, b0, c40);
      if (NV > 1) c41 = madd(s, b1, c41);
      s = v128.load32_splat(a + 20);
      c50 = madd(s, b0, c50);
      if (NV > 1) c51 = madd(s, b1, c51);
    }
    a += lda;
    b += ldb;
    if (a >= end) break;
  }
  const va = f32x4.splat(reinterpret<f32>(alphaBits));
  tnPut(c, c00, c01, va, nr, acc);
  if (mr > 1) tnPut(c + ldc, c10, c11, va, nr, acc);
  if (mr > 2) tnPut(c + 2 * ldc, c20, c21, va, nr, acc);
  if (mr > 3) tnPut(c + 3 * ldc, c30, c31, va, nr, acc);
  if (mr > 4) tnPut(c + 4 * ldc, c40, c41, va, nr, acc);
  if (mr > 5) tnPut(c + 5 * ldc, c50, c51, va, nr, acc);
}

// @ts-ignore: decorator
@inline function tnPut(c: usize, lo: v128, hi: v128, va: v128, nr: i32, acc: bool): void {
  putLanes(c, f32x4.mul(lo, va), min(nr, 4), acc);
  if (nr > 4) putLanes(c + 16, f32x4.mul(hi, va), nr - 4, acc);
}

function tn6x8(a: usize, lda: usize, b: usize, ldb: usize, steps: i32, c: usize, ldc: usize, nr: i32, alphaBits: i32, acc: bool): void {
  tnTile(a, lda, b, ldb, steps, c, ldc, 6, nr, alphaBits, acc, 6, 2);
}
function tn6x4(a: usize, lda: usize, b: usize, ldb: usize, steps: i32, c: usize, ldc: usize, nr: i32, alphaBits: i32, acc: bool): void {
  tnTile(a, lda, b, ldb, steps, c, ldc, 6, nr, alphaBits, acc, 6, 1);
}
function tn4x8(a: usize, lda: usize, b: usize, ldb: usize, steps: i32, c: usize, ldc: usize, mr: i32, nr: i32, alphaBits: i32, acc: bool): void {
  tnTile(a, lda, b, ldb, steps, c, ldc, mr, nr, alphaBits, acc, 4, 2);
}
function tn4x4(a: usize, lda: usize, b: usize, ldb: usize, steps: i32, c: usize, ldc: usize, mr: i32, nr: i32, alphaBits: i32, acc: bool): void {
  tnTile(a, lda, b, ldb, steps, c, ldc, mr, nr, alphaBits, acc, 4, 1);
}

/** Columns j0.. of C: one tile (any mr ≤ 6, nr ≤ 8). Columns past 4·⌊cols/4⌋ go one at a time. */
// @ts-ignore: decorator
@inline function tnAt(
  a: usize, lda: usize, b: usize, ldb: usize, steps: i32, c: usize, ldc: usize, mr: i32, nr: i32,
  alphaBits: i32, acc: bool,
): void {
  if (nr >= 8) {
    if (mr == 6) tn6x8(a, lda, b, ldb, steps, c, ldc, 8, alphaBits, acc);
    else tn4x8(a, lda, b, ldb, steps, c, ldc, mr, 8, alphaBits, acc);
  } else if (nr >= 4) {
    if (mr == 6) tn6x4(a, lda, b, ldb, steps, c, ldc, 4, alphaBits, acc);
    else tn4x4(a, lda, b, ldb, steps, c, ldc, mr, 4, alphaBits, acc);
    if (nr > 4) tnScalar(a, lda, b + 16, ldb, steps, c + 16, ldc, mr, nr - 4, alphaBits, acc);
  } else {
    tnScalar(a, lda, b, ldb, steps, c, ldc, mr, nr, alphaBits, acc);
  }
}

/** Leftover columns (fewer than 4): one dot product over m per element. */
function tnScalar(
  a: usize, lda: usize, b: usize, ldb: usize, steps: i32, c: usize, ldc: usize, mr: i32, nr: i32,
  alphaBits: i32, acc: bool,
): void {
  const alpha = reinterpret<f32>(alphaBits);
  for (let i = 0; i < mr; i++) {
    for (let j = 0; j < nr; j++) {
      let s: f32 = 0;
      let pa = a + <usize>i * 4, pb = b + <usize>j * 4;
      for (let m = 0; m < steps; m++) {
        s += load<f32>(pa) * load<f32>(pb);
        pa += lda;
        pb += ldb;
      }
      put(c + <usize>i * ldc + <usize>j * 4, alpha * s, acc);
    }
  }
}

/**
 * C (rows×cols, row stride ldc) [+]= alpha·Σ_{m<steps} A[m, i]·B[m, j] with
 * A rows at stride lda, B rows at stride ldb (floats). Rows are cut into
 * tiles of 6, the last few of 4 (or fewer).
 */
export function gemmTN(
  c: usize, ldc: i32, a: usize, lda: i32, b: usize, ldb: i32,
  rows: i32, cols: i32, steps: i32, alpha: f32, acc: bool,
): void {
  if (rows <= 0 || cols <= 0) return;
  if (steps <= 0) {
    if (!acc) {
      for (let i = 0; i < rows; i++) memory.fill(c + <usize>i * <usize>ldc * 4, 0, <usize>cols * 4);
    }
    return;
  }
  const alphaBits = reinterpret<i32>(alpha);
  const ldcb = <usize>ldc << 2, ldab = <usize>lda << 2, ldbb = <usize>ldb << 2;
  // Row tiles: sixes, then fours for the rest (7 → 4+3, 8 → 4+4, 5 → 4+1).
  const rem = rows % 6;
  let sixes = rows / 6;
  if ((rem == 1 || rem == 2) && sixes > 0) sixes--;
  const sixRows = sixes * 6;
  // Blocks of TNB steps keep the operand slices a tile touches in L1 while
  // the neighbouring tiles reuse them; C is revisited once per block.
  for (let m0 = 0; m0 < steps; m0 += TNB) {
    const n = min(TNB, steps - m0);
    const accNow = acc || m0 > 0;
    const am = a + <usize>m0 * ldab, bm = b + <usize>m0 * ldbb;
    // Walk the longer side of C in the outer loop: the shorter side's slice is
    // the one reused.
    if (rows >= cols) {
      for (let i0 = 0; i0 < rows; ) {
        const mr = i0 < sixRows ? 6 : min(4, rows - i0);
        for (let j0 = 0; j0 < cols; j0 += 8) {
          tnAt(am + <usize>i0 * 4, ldab, bm + <usize>j0 * 4, ldbb, n, c + <usize>i0 * ldcb + <usize>j0 * 4, ldcb, mr, min(8, cols - j0), alphaBits, accNow);
        }
        i0 += mr;
      }
    } else {
      for (let j0 = 0; j0 < cols; j0 += 8) {
        for (let i0 = 0; i0 < rows; ) {
          const mr = i0 < sixRows ? 6 : min(4, rows - i0);
          tnAt(am + <usize>i0 * 4, ldab, bm + <usize>j0 * 4, ldbb, n, c + <usize>i0 * ldcb + <usize>j0 * 4, ldcb, mr, min(8, cols - j0), alphaBits, accNow);
          i0 += mr;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Exports: the three layouts, each on the block [i0,i1)×[j0,j1) of its output.

/** Y [+]= X·Wᵀ on Y[i0:i1, j0:j1]. X is (M,K), W is (N,K), Y is (M,N). */
export function gemm_xwt(
  y: usize, x: usize, w: usize, M: i32, K: i32, N: i32, accumulate: i32, scratch: usize,
  i0: i32, i1: i32, j0: i32, j1: i32,
): void {
  gemmAny(
    y + (<usize>i0 * <usize>N + <usize>j0) * 4, N,
    x + <usize>i0 * <usize>K * 4, K, 1,
    w + <usize>j0 * <usize>K * 4, K, 1,
    i1 - i0, j1 - j0, K, 1, accumulate != 0, scratch, M, N,
  );
}

/** dX [+]= dY·W on dX[i0:i1, j0:j1]. dY is (M,N), W is (N,K), dX is (M,K). */
export function gemm_dyw(
  dx: usize, dy: usize, w: usize, M: i32, N: i32, K: i32, accumulate: i32, scratch: usize,
  i0: i32, i1: i32, j0: i32, j1: i32,
): void {
  gemmAny(
    dx + (<usize>i0 * <usize>K + <usize>j0) * 4, K,
    dy + <usize>i0 * <usize>N * 4, N, 1,
    w + <usize>j0 * 4, 1, K,
    i1 - i0, j1 - j0, N, 1, accumulate != 0, scratch, M, K,
  );
}

/** dW [+]= dYᵀ·X on dW[i0:i1, j0:j1]. dY is (M,N), X is (M,K), dW is (N,K). */
export function gemm_dytx(
  dw: usize, dy: usize, x: usize, M: i32, N: i32, K: i32, accumulate: i32, scratch: usize,
  i0: i32, i1: i32, j0: i32, j1: i32,
): void {
  gemmAny(
    dw + (<usize>i0 * <usize>K + <usize>j0) * 4, K,
    dy + <usize>i0 * 4, 1, N,
    x + <usize>j0 * 4, 1, K,
    i1 - i0, j1 - j0, M, 1, accumulate != 0, scratch, N, K,
  );
}
