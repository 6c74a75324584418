// Transport codecs (DLORA.md §5): f32↔f16, f32↔bf16, int8 per-row absmax,
// and magnitude top-k with delta-varint indices and f16 values.
// Dimension names: n = element count, R = rows, C = cols (row-major).
// Decoders validate everything before writing any output; kernels report
// errors as codes (see the ERR_ constants) plus codecErrorDetail().

// ---------------------------------------------------------------------------
// Error reporting. Wasm globals are per instance; decoders run on the calling
// thread only, so one global detail slot is enough.

const ERR_NONFINITE: i32 = 1; // detail: element index (top-k) or row (int8)
const ERR_HEADER: i32 = 2; // truncated or overlong varint in the header
const ERR_N_MISMATCH: i32 = 3; // detail: n in the payload
const ERR_K_TOO_LARGE: i32 = 4; // detail: k in the payload
const ERR_TRUNCATED_VALUES: i32 = 5; // detail: bytes needed
const ERR_VALUE_NONFINITE: i32 = 6; // detail: entry
const ERR_INDEX_VARINT: i32 = 7; // detail: entry (truncated or overlong varint)
const ERR_INDEX_RANGE: i32 = 8; // detail: entry
const ERR_NOT_ASCENDING: i32 = 9; // detail: entry
const ERR_TRAILING: i32 = 10; // detail: trailing byte count
const ERR_BAD_SCALE: i32 = 11; // detail: row
const ERR_BAD_Q: i32 = 12; // detail: element index

let errorDetail: i32 = 0;

/** Detail (an index or a count) of the last error a codec kernel returned. */
export function codecErrorDetail(): i32 {
  return errorDetail;
}

// ---------------------------------------------------------------------------
// f16 (IEEE binary16). Round-to-nearest-even by the FPU: adding C = 2^(E+13)
// to |x| (E = the f16 exponent of |x|, at least −14) leaves f32 ulps equal to
// f16 ulps at that exponent, so the f32 add rounds |x| exactly as binary16
// must, and S − C (as integers) is the f16 significand count (a carry to 2048
// moves into the exponent; at ≥ 65520 it lands on Inf). Subnormals use E = −14.
// NaN → quiet NaN keeping sign and the top 9 payload bits.

// @ts-ignore: decorator
@inline function f16FromF32x4(x: v128): v128 {
  const a = v128.and(x, i32x4.splat(0x7fffffff));
  const ac = i32x4.min_u(a, i32x4.splat(0x47800000)); // 65536: anything larger rounds to Inf too
  const e = i32x4.max_u(v128.and(ac, i32x4.splat(0x7f800000)), i32x4.splat(113 << 23));
  const c = i32x4.add(e, i32x4.splat(13 << 23));
  const s = f32x4.add(ac, c);
  let h = i32x4.add(i32x4.shr_u(i32x4.sub(e, i32x4.splat(113 << 23)), 13), i32x4.sub(s, c));
  // NaN: h is 0x7c00 here (a was clamped); add the quiet bit and the payload
  const nan = v128.and(i32x4.gt_s(a, i32x4.splat(0x7f800000)), v128.or(i32x4.shr_u(a, 13), i32x4.splat(0x200)));
  h = v128.or(h, v128.and(nan, i32x4.splat(0x3ff)));
  return v128.or(h, v128.and(i32x4.shr_u(x, 16), i32x4.splat(0x8000)));
}

// Scalar twin for tails and top-k values: same rounding, written with the
// classic split (normals by integer add of 0xfff + odd bit, subnormals by
// adding 0.5 in f32), so the tests compare two independent formulations.
// @ts-ignore: decorator
@inline function f16Bits(x: f32): u32 {
  const b = reinterpret<u32>(x);
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  if (a < 0x38800000) return sign | (reinterpret<u32>(reinterpret<f32>(a) + <f32>0.5) - 0x3f000000);
  const ac = min<u32>(a, 0x47800000);
  return sign | ((ac - 0x38000000 + 0xfff + ((ac >>> 13) & 1)) >>> 13);
}

/** Lanes hold f16 bits in the low 16 bits of each u32; exact. */
// @ts-ignore: decorator
@inline function f32FromF16x4(h: v128): v128 {
  const sign = i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16);
  const em = v128.and(h, i32x4.splat(0x7fff));
  const nrm = i32x4.add(i32x4.shl(em, 13), i32x4.splat(112 << 23));
  const sub = f32x4.mul(f32x4.convert_i32x4_u(em), f32x4.splat(5.9604644775390625e-8)); // 2^-24
  const special = i32x4.gt_s(em, i32x4.splat(0x7bff));
  const isNan = i32x4.gt_s(em, i32x4.splat(0x7c00));
  const infNan = v128.or(
    i32x4.add(i32x4.shl(em, 13), i32x4.splat(224 << 23)),
    v128.and(isNan, i32x4.splat(0x00400000)),
  );
  let r = v128.bitselect(sub, nrm, i32x4.lt_s(em, i32x4.splat(0x400)));
  r = v128.bitselect(infNan, r, special);
  return v128.or(r, sign);
}

// @ts-ignore: decorator
@inline function f16Value(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const em = h & 0x7fff;
  if (em < 0x400) {
    const s = <f32>em * <f32>5.9604644775390625e-8;
    return reinterpret<f32>(reinterpret<u32>(s) | sign);
  }
  if (em >= 0x7c00) {
    return reinterpret<f32>(sign | ((em << 13) + (224 << 23)) | (em > 0x7c00 ? 0x00400000 : 0));
  }
  return reinterpret<f32>(sign | ((em << 13) + (112 << 23)));
}

/** dst[i] = f16(src[i]). src is (n) f32, dst is (n) u16. */
export function codecF32ToF16(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const a = f16FromF32x4(v128.load(src + (<usize>i << 2)));
    const b = f16FromF32x4(v128.load(src + (<usize>i << 2), 16));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f16Bits(load<f32>(src + (<usize>i << 2))));
}

/** dst[i] = f32(src[i]), exact. src is (n) u16 f16 bits, dst is (n) f32. */
export function codecF16ToF32(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), f32FromF16x4(i32x4.extend_low_i16x8_u(h)));
    v128.store(dst + (<usize>i << 2), f32FromF16x4(i32x4.extend_high_i16x8_u(h)), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), f16Value(<u32>load<u16>(src + (<usize>i << 1))));
}

// ---------------------------------------------------------------------------
// bf16: the top half of an f32, rounded to nearest even; NaN keeps its sign
// and top payload bits and gets the quiet bit, so it can never round to Inf.

// @ts-ignore: decorator
@inline function bf16FromF32x4(x: v128): v128 {
  const a = v128.and(x, i32x4.splat(0x7fffffff));
  const lsb = v128.and(i32x4.shr_u(x, 16), i32x4.splat(1));
  const r = i32x4.shr_u(i32x4.add(i32x4.add(x, i32x4.splat(0x7fff)), lsb), 16);
  const nan = v128.or(i32x4.shr_u(x, 16), i32x4.splat(0x0040));
  return v128.bitselect(nan, r, i32x4.gt_s(a, i32x4.splat(0x7f800000)));
}

// @ts-ignore: decorator
@inline function bf16Bits(x: f32): u32 {
  const b = reinterpret<u32>(x);
  if ((b & 0x7fffffff) > 0x7f800000) return (b >>> 16) | 0x0040;
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

/** dst[i] = bf16(src[i]). src is (n) f32, dst is (n) u16. */
export function codecF32ToBf16(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const a = bf16FromF32x4(v128.load(src + (<usize>i << 2)));
    const b = bf16FromF32x4(v128.load(src + (<usize>i << 2), 16));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>bf16Bits(load<f32>(src + (<usize>i << 2))));
}

/** dst[i] = f32(src[i]), bit-exact widening. src is (n) u16 bf16 bits, dst is (n) f32. */
export function codecBf16ToF32(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), i32x4.shl(i32x4.extend_low_i16x8_u(h), 16));
    v128.store(dst + (<usize>i << 2), i32x4.shl(i32x4.extend_high_i16x8_u(h), 16), 16);
  }
  for (; i < n; i++) store<u32>(dst + (<usize>i << 2), <u32>load<u16>(src + (<usize>i << 1)) << 16);
}

// ---------------------------------------------------------------------------
// int8 per-row absmax. scale_r = max|x_r|/127 (f32), q = clamp(roundHalfEven(x/scale_r), ±127);
// an all-zero row has scale 0 and q 0. A row holding NaN/Inf is rejected.

/**
 * src is (R,C) f32, q is (R,C) i8, scales is (R) f32. Returns 0, or
 * ERR_NONFINITE with the detail = first row holding NaN/Inf; rows before it
 * have been written, that row and later ones have not.
 */
export function codecQuantizeInt8Rows(src: usize, R: i32, C: i32, q: usize, scales: usize): i32 {
  const lim = f32x4.splat(127), nlim = f32x4.splat(-127);
  for (let r = 0; r < R; r++) {
    const row = src + ((<usize>r * <usize>C) << 2);
    const qrow = q + <usize>r * <usize>C;
    let mx = f32x4.splat(0);
    let j = 0;
    for (; j + 4 <= C; j += 4) mx = f32x4.max(mx, f32x4.abs(v128.load(row + (<usize>j << 2))));
    let amax = max<f32>(
      max<f32>(f32x4.extract_lane(mx, 0), f32x4.extract_lane(mx, 1)),
      max<f32>(f32x4.extract_lane(mx, 2), f32x4.extract_lane(mx, 3)),
    );
    for (; j < C; j++) amax = max<f32>(amax, Mathf.abs(load<f32>(row + (<usize>j << 2))));
    // wasm max propagates NaN, so one test catches NaN and Inf anywhere in the row.
    if (!(amax <= f32.MAX_VALUE)) {
      errorDetail = r;
      return ERR_NONFINITE;
    }
    const scale = amax / <f32>127;
    store<f32>(scales + (<usize>r << 2), scale);
    if (scale == 0) {
      // all zero (or |x| so tiny that the scale underflows): q = 0
      memory.fill(qrow, 0, <usize>C);
      continue;
    }
    const vs = f32x4.splat(scale);
    j = 0;
    for (; j + 16 <= C; j += 16) {
      const p = row + (<usize>j << 2);
      const a = i32x4.trunc_sat_f32x4_s(f32x4.max(nlim, f32x4.min(lim, f32x4.nearest(f32x4.div(v128.load(p), vs)))));
      const b = i32x4.trunc_sat_f32x4_s(f32x4.max(nlim, f32x4.min(lim, f32x4.nearest(f32x4.div(v128.load(p, 16), vs)))));
      const c = i32x4.trunc_sat_f32x4_s(f32x4.max(nlim, f32x4.min(lim, f32x4.nearest(f32x4.div(v128.load(p, 32), vs)))));
      const d = i32x4.trunc_sat_f32x4_s(f32x4.max(nlim, f32x4.min(lim, f32x4.nearest(f32x4.div(v128.load(p, 48), vs)))));
      v128.store(qrow + <usize>j, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(a, b), i16x8.narrow_i32x4_s(c, d)));
    }
    for (; j < C; j++) {
      const v = max<f32>(<f32>-127, min<f32>(<f32>127, nearest<f32>(load<f32>(row + (<usize>j << 2)) / scale)));
      store<i8>(qrow + <usize>j, <i8><i32>v);
    }
  }
  return 0;
}

/**
 * out[r,c] = q[r,c]·scales[r]. q is (R,C) i8, scales is (R) f32, out is (R,C) f32.
 * Validates first: every scale finite and ≥ 0 (else ERR_BAD_SCALE, detail row),
 * no q equal to −128 (else ERR_BAD_Q, detail element); out is untouched on error.
 */
export function codecDequantizeInt8Rows(q: usize, scales: usize, R: i32, C: i32, out: usize): i32 {
  for (let r = 0; r < R; r++) {
    const s = load<f32>(scales + (<usize>r << 2));
    if (!(s >= 0 && s <= f32.MAX_VALUE)) {
      errorDetail = r;
      return ERR_BAD_SCALE;
    }
  }
  const total = <usize>R * <usize>C;
  const bad = i8x16.splat(-128);
  let e: usize = 0;
  for (; e + 16 <= total; e += 16) {
    if (v128.any_true(i8x16.eq(v128.load(q + e), bad))) break;
  }
  for (; e < total; e++) {
    if (load<i8>(q + e) == -128) {
      errorDetail = <i32>e;
      return ERR_BAD_Q;
    }
  }
  for (let r = 0; r < R; r++) {
    const qrow = q + <usize>r * <usize>C;
    const orow = out + ((<usize>r * <usize>C) << 2);
    const s = load<f32>(scales + (<usize>r << 2));
    const vs = f32x4.splat(s);
    let j = 0;
    for (; j + 16 <= C; j += 16) {
      const b = v128.load(qrow + <usize>j);
      const lo = i16x8.extend_low_i8x16_s(b), hi = i16x8.extend_high_i8x16_s(b);
      const p = orow + (<usize>j << 2);
      v128.store(p, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), vs));
      v128.store(p, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), vs), 16);
      v128.store(p, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), vs), 32);
      v128.store(p, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), vs), 48);
    }
    for (; j < C; j++) store<f32>(orow + (<usize>j << 2), <f32>load<i8>(qrow + <usize>j) * s);
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Magnitude top-k. Payload layout (all little-endian):
//   varint n | varint k | k × f16 value | k × varint index delta
// Indices ascend; the first delta is the index itself, later deltas are ≥ 1.
// Selection is exact: order by (|y| descending, index ascending) and keep the
// first k, found by a 3-level radix select on the 31 magnitude bits
// (11 + 10 + 10 bits) in O(n). Values beyond ±65504 are clamped to ±65504 so a
// finite input never becomes Inf on the wire (the residual keeps the rest).

const HIST_BINS: i32 = 2048;
/** Scratch bytes topk encode needs: four 2048-bin u32 histograms. */
export function codecTopkScratchBytes(): i32 {
  return 4 * HIST_BINS * 4;
}

let selThreshold: u32 = 0; // keys above are taken
let selTies: i32 = 0; // how many keys equal to the threshold are taken (lowest indices first)

// @ts-ignore: decorator
@inline function varintLen(v: u32): usize {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

// @ts-ignore: decorator
@inline function putVarint(p: usize, v: u32): usize {
  while (v >= 0x80) {
    store<u8>(p, <u8>(v | 0x80));
    v >>>= 7;
    p++;
  }
  store<u8>(p, <u8>v);
  return p + 1;
}

// y = x, or x + r when r != 0 (error feedback adds the residual on the fly so
// nothing is written before the input is known to be finite).
// @ts-ignore: decorator
@inline function loadY(x: usize, r: usize, o: usize): v128 {
  const v = v128.load(x + o);
  return r ? f32x4.add(v, v128.load(r + o)) : v;
}

// @ts-ignore: decorator
@inline function scalarY(x: usize, r: usize, o: usize): f32 {
  return r ? load<f32>(x + o) + load<f32>(r + o) : load<f32>(x + o);
}

// @ts-ignore: decorator
@inline function bump(hist: usize, bin: u32): void {
  const p = hist + (<usize>bin << 2);
  store<u32>(p, load<u32>(p) + 1);
}

/** Index of the bin holding the need-th largest key; updates `need` to the count wanted inside it. */
let boundaryNeed: i32 = 0;
function boundaryBin(hist: usize, bins: i32, need: i32): i32 {
  let above = 0;
  for (let b = bins - 1; b >= 0; b--) {
    const c = <i32>load<u32>(hist + (<usize>b << 2));
    if (above + c >= need) {
      boundaryNeed = need - above;
      return b;
    }
    above += c;
  }
  boundaryNeed = 0;
  return 0;
}

/**
 * Histogram of the bins (key >>> shift) & mask over keys with
 * key >>> (shift + width) == prefix. `dense` (most keys match, as with many
 * equal values) counts every lane branch-free into four sub-histograms;
 * otherwise a SIMD test skips groups of 8 keys that cannot match.
 */
function filteredHistogram(
  x: usize, r: usize, n: i32, hist: usize, prefix: u32, shift: u32, width: u32, dense: bool,
): void {
  const bins = 1 << width;
  const mask = bins - 1;
  const vabs = i32x4.splat(0x7fffffff), vpre = i32x4.splat(prefix);
  const top = shift + width;
  let i = 0;
  if (dense) {
    const stride = <usize>bins << 2;
    memory.fill(hist, 0, stride << 2);
    const vmask = i32x4.splat(mask), one = i32x4.splat(1);
    for (; i + 4 <= n; i += 4) {
      const key = v128.and(loadY(x, r, <usize>i << 2), vabs);
      const bin = i32x4.shl(v128.and(i32x4.shr_u(key, shift), vmask), 2);
      const inc = v128.and(i32x4.eq(i32x4.shr_u(key, top), vpre), one);
      let p = hist + <usize>i32x4.extract_lane(bin, 0);
      store<u32>(p, load<u32>(p) + i32x4.extract_lane(inc, 0));
      p = hist + stride + <usize>i32x4.extract_lane(bin, 1);
      store<u32>(p, load<u32>(p) + i32x4.extract_lane(inc, 1));
      p = hist + 2 * stride + <usize>i32x4.extract_lane(bin, 2);
      store<u32>(p, load<u32>(p) + i32x4.extract_lane(inc, 2));
      p = hist + 3 * stride + <usize>i32x4.extract_lane(bin, 3);
      store<u32>(p, load<u32>(p) + i32x4.extract_lane(inc, 3));
    }
    for (let b = 0; b < bins; b++) {
      const o = <usize>b << 2;
      store<u32>(hist + o, load<u32>(hist + o) + load<u32>(hist + stride + o) +
        load<u32>(hist + 2 * stride + o) + load<u32>(hist + 3 * stride + o));
    }
  } else {
    memory.fill(hist, 0, <usize>bins << 2);
    for (; i + 8 <= n; i += 8) {
      const o = <usize>i << 2;
      const k0 = v128.and(loadY(x, r, o), vabs);
      const k1 = v128.and(loadY(x, r, o + 16), vabs);
      const m = v128.or(i32x4.eq(i32x4.shr_u(k0, top), vpre), i32x4.eq(i32x4.shr_u(k1, top), vpre));
      if (!v128.any_true(m)) continue;
      for (let l = 0; l < 8; l++) {
        const key = reinterpret<u32>(scalarY(x, r, o + (<usize>l << 2))) & 0x7fffffff;
        if ((key >>> top) == prefix) bump(hist, (key >>> shift) & mask);
      }
    }
  }
  for (; i < n; i++) {
    const key = reinterpret<u32>(scalarY(x, r, <usize>i << 2)) & 0x7fffffff;
    if ((key >>> top) == prefix) bump(hist, (key >>> shift) & mask);
  }
}

/**
 * Finds the selection threshold for the k largest |y| (sets selThreshold,
 * selTies). Returns ERR_NONFINITE (detail = first index) if y has NaN/Inf.
 */
function topkSelect(x: usize, r: usize, n: i32, k: i32, hist: usize): i32 {
  // Level 1: bits 30..20, four sub-histograms so runs of equal bins don't
  // serialise on one counter.
  memory.fill(hist, 0, <usize>(4 * HIST_BINS * 4));
  const h1 = hist + <usize>(HIST_BINS * 4), h2 = h1 + <usize>(HIST_BINS * 4), h3 = h2 + <usize>(HIST_BINS * 4);
  const vabs = i32x4.splat(0x7fffffff);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const b = i32x4.shr_u(v128.and(loadY(x, r, <usize>i << 2), vabs), 20);
    bump(hist, i32x4.extract_lane(b, 0));
    bump(h1, i32x4.extract_lane(b, 1));
    bump(h2, i32x4.extract_lane(b, 2));
    bump(h3, i32x4.extract_lane(b, 3));
  }
  for (; i < n; i++) bump(hist, (reinterpret<u32>(scalarY(x, r, <usize>i << 2)) & 0x7fffffff) >>> 20);
  let nonfinite: u32 = 0;
  for (let b = 0; b < HIST_BINS; b++) {
    const o = <usize>b << 2;
    const c = load<u32>(hist + o) + load<u32>(h1 + o) + load<u32>(h2 + o) + load<u32>(h3 + o);
    store<u32>(hist + o, c);
    if (b >= 0x7f8) nonfinite += c; // exponent all ones: Inf or NaN
  }
  if (nonfinite != 0) {
    for (let j = 0; j < n; j++) {
      if ((reinterpret<u32>(scalarY(x, r, <usize>j << 2)) & 0x7f800000) == 0x7f800000) {
        errorDetail = j;
        break;
      }
    }
    return ERR_NONFINITE;
  }
  if (k == 0) {
    selThreshold = 0x7fffffff; // above every finite key: nothing is taken
    selTies = 0;
    return 0;
  }
  const b1 = <u32>boundaryBin(hist, HIST_BINS, k);
  let need = boundaryNeed;
  const c1 = <i32>load<u32>(hist + (<usize>b1 << 2));
  if (need == c1) {
    // the whole boundary bin is taken: every key ≥ its lower bound
    selThreshold = b1 << 20;
    selTies = i32.MAX_VALUE;
    return 0;
  }
  // Level 2: bits 19..10 of keys in bin b1.
  // More than 1/16 of the keys in one bin: counting branch-free is cheaper.
  filteredHistogram(x, r, n, hist, b1, 10, 10, c1 > (n >> 4));
  const b2 = <u32>boundaryBin(hist, 1024, need);
  need = boundaryNeed;
  const prefix = (b1 << 10) | b2;
  const c2 = <i32>load<u32>(hist + (<usize>b2 << 2));
  if (need == c2) {
    selThreshold = prefix << 10;
    selTies = i32.MAX_VALUE;
    return 0;
  }
  // Level 3: bits 9..0 of keys with that 21-bit prefix.
  filteredHistogram(x, r, n, hist, prefix, 0, 10, c2 > (n >> 4));
  const b3 = <u32>boundaryBin(hist, 1024, need);
  selThreshold = (prefix << 10) | b3;
  selTies = boundaryNeed;
  return 0;
}

// @ts-ignore: decorator
@inline function clampF16(y: f32): f32 {
  return max<f32>(<f32>-65504, min<f32>(<f32>65504, y));
}

/**
 * Encodes the k largest |y| of y (n), y = x, or y = x + residual when
 * residual != 0 (error feedback: afterwards residual = y − decode(payload)).
 * out must hold codecTopkMaxBytes; scratch is codecTopkScratchBytes.
 * Returns bytes written (> 0), or −ERR_NONFINITE (detail = first index) with
 * nothing written to out or residual.
 */
export function codecTopkEncode(x: usize, residual: usize, n: i32, k: i32, out: usize, scratch: usize): i32 {
  const err = topkSelect(x, residual, n, k, scratch);
  if (err != 0) return -err;
  const T = selThreshold;
  let ties = selTies;
  let p = putVarint(putVarint(out, <u32>n), <u32>k);
  const vals = p;
  p += <usize>k << 1;
  // Lanes with key ≥ T may be taken; once the ties at T are used up only key > T can.
  let vT = i32x4.splat(<i32>T);
  const vabs = i32x4.splat(0x7fffffff);
  const src = residual ? residual : x; // where y[i] sits once the SIMD part has run
  let taken = 0;
  let prev = 0;
  let i = 0;
  if (!residual && k == 0) return <i32>(p - out);
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    const y0 = loadY(x, residual, o), y1 = loadY(x, residual, o + 16);
    if (residual) {
      v128.store(residual + o, y0);
      v128.store(residual + o, y1, 16);
    }
    const m = v128.or(i32x4.ge_s(v128.and(y0, vabs), vT), i32x4.ge_s(v128.and(y1, vabs), vT));
    if (!v128.any_true(m)) continue;
    for (let l = 0; l < 8; l++) {
      const e = i + l;
      const y = load<f32>(src + (<usize>e << 2));
      const key = reinterpret<u32>(y) & 0x7fffffff;
      if (key < T || (key == T && ties == 0)) continue;
      if (key == T) ties--;
      const h = f16Bits(clampF16(y));
      store<u16>(vals + (<usize>taken << 1), <u16>h);
      p = putVarint(p, <u32>(taken == 0 ? e : e - prev));
      prev = e;
      taken++;
      if (residual) store<f32>(residual + (<usize>e << 2), y - f16Value(h));
    }
    if (taken == k && !residual) return <i32>(p - out); // the rest only has to be skipped
    if (ties == 0) vT = i32x4.splat(<i32>T + 1);
  }
  for (; i < n; i++) {
    const y = scalarY(x, residual, <usize>i << 2);
    if (residual) store<f32>(residual + (<usize>i << 2), y);
    const key = reinterpret<u32>(y) & 0x7fffffff;
    if (key < T || (key == T && ties == 0)) continue;
    if (key == T) ties--;
    const h = f16Bits(clampF16(y));
    store<u16>(vals + (<usize>taken << 1), <u16>h);
    p = putVarint(p, <u32>(taken == 0 ? i : i - prev));
    prev = i;
    taken++;
    if (residual) store<f32>(residual + (<usize>i << 2), y - f16Value(h));
  }
  return <i32>(p - out);
}

// Varint reader for the decoder: value in `readValue`, new position returned,
// 0 on a truncated or overlong (> 32-bit) varint.
let readValue: u32 = 0;
function readVarint(p: usize, end: usize): usize {
  let v: u32 = 0;
  for (let s: u32 = 0; s < 35; s += 7) {
    if (p >= end) return 0;
    const b = <u32>load<u8>(p++);
    if (s == 28 && b > 0x0f) return 0;
    v |= (b & 0x7f) << s;
    if (b < 0x80) {
      readValue = v;
      return p;
    }
  }
  return 0;
}

/**
 * Decodes a top-k payload of `len` bytes into out (n): out = decoded (zeros
 * elsewhere), or out += decoded when accumulate != 0. Everything is validated
 * before out is touched. Returns 0 or an ERR_ code (detail in codecErrorDetail).
 */
export function codecTopkDecode(bytes: usize, len: i32, n: i32, out: usize, accumulate: i32): i32 {
  const end = bytes + <usize>len;
  let p = readVarint(bytes, end);
  if (p == 0) return ERR_HEADER;
  const pn = readValue;
  if (pn != <u32>n) {
    errorDetail = <i32>pn;
    return ERR_N_MISMATCH;
  }
  p = readVarint(p, end);
  if (p == 0) return ERR_HEADER;
  const k = readValue;
  if (k > <u32>n) {
    errorDetail = <i32>k;
    return ERR_K_TOO_LARGE;
  }
  const vals = p;
  const idx0 = vals + (<usize>k << 1);
  if (idx0 > end) {
    errorDetail = <i32>(idx0 - bytes);
    return ERR_TRUNCATED_VALUES;
  }
  for (let j: u32 = 0; j < k; j++) {
    if ((load<u16>(vals + (<usize>j << 1)) & 0x7c00) == 0x7c00) {
      errorDetail = <i32>j;
      return ERR_VALUE_NONFINITE;
    }
  }
  p = idx0;
  let prev: u32 = 0;
  for (let j: u32 = 0; j < k; j++) {
    p = readVarint(p, end);
    errorDetail = <i32>j;
    if (p == 0) return ERR_INDEX_VARINT;
    const d = readValue;
    if (j > 0 && d == 0) return ERR_NOT_ASCENDING;
    // idx = prev + d without overflow: out of range iff d ≥ n − prev (prev < n here)
    const base = j == 0 ? 0 : prev;
    if (d >= <u32>n - base) return ERR_INDEX_RANGE;
    prev = base + d;
  }
  if (p != end) {
    errorDetail = <i32>(end - p);
    return ERR_TRAILING;
  }
  // Valid: now write.
  if (!accumulate) memory.fill(out, 0, <usize>n << 2);
  p = idx0;
  prev = 0;
  for (let j: u32 = 0; j < k; j++) {
    p = readVarint(p, end);
    const idx = j == 0 ? readValue : prev + readValue;
    prev = idx;
    const o = out + (<usize>idx << 2);
    const v = f16Value(<u32>load<u16>(vals + (<usize>j << 1)));
    store<f32>(o, accumulate ? load<f32>(o) + v : v);
  }
  return 0;
}
