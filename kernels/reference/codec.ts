/**
 * Slow, clear references for the transport codecs (tests only). Rounding is
 * done on values (exact f64 arithmetic), not with the kernels' bit tricks, so
 * the two are independent. Bit patterns are passed as unsigned integers so
 * NaN payloads survive.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The f32 bit pattern of `x` (rounded to f32 first). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

/** The f32 value of a bit pattern (NaN payloads may not survive a JS number). */
export function bitsF32(b: number): number {
  u32[0] = b;
  return f32[0];
}

/** Round half to even for any finite v. */
export function roundHalfEven(v: number): number {
  const a = Math.abs(v);
  const f = Math.floor(a);
  const d = a - f;
  const r = d > 0.5 ? f + 1 : d < 0.5 ? f : (f % 2 === 0 ? f : f + 1);
  return v < 0 ? -r : r;
}

function floorLog2(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/** a ≥ 0 rounded to nearest even with p fraction bits and minimum exponent emin. */
function roundToFormat(a: number, p: number, emin: number): number {
  if (a === 0) return 0;
  const ulp = 2 ** (Math.max(floorLog2(a), emin) - p);
  return roundHalfEven(a / ulp) * ulp;
}

/** IEEE binary16 bits of the f32 with bits `b`: RNE, overflow → ±Inf, NaN → quiet NaN. */
export function f32ToF16BitsRef(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  if (a === 0x7f800000) return sign | 0x7c00;
  const v = roundToFormat(bitsF32(a), 10, -14);
  if (v > 65504) return sign | 0x7c00;
  if (v < 2 ** -14) return sign | (v / 2 ** -24);
  const e = floorLog2(v);
  return sign | ((e + 15) << 10) | ((v / 2 ** e - 1) * 1024);
}

/** f32 bits of the binary16 `h` (exact; NaN → quiet NaN with the payload shifted up). */
export function f16ToF32BitsRef(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >> 10) & 31, m = h & 1023;
  if (e === 31) return (m === 0 ? sign | 0x7f800000 : sign | 0x7fc00000 | (m << 13)) >>> 0;
  const v = e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
  return (sign | f32Bits(v)) >>> 0;
}

/** The value of binary16 `h` as a number. */
export function f16ValueRef(h: number): number {
  const e = (h >> 10) & 31, m = h & 1023;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
}

const BF16_MAX = (2 - 2 ** -7) * 2 ** 127;

/** bfloat16 bits of the f32 with bits `b`: RNE, overflow → ±Inf, NaN → quiet NaN. */
export function f32ToBf16BitsRef(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return (b >>> 16) | 0x40;
  if (a === 0x7f800000) return sign | 0x7f80;
  const v = roundToFormat(bitsF32(a), 7, -126);
  if (v > BF16_MAX) return sign | 0x7f80;
  return sign | (f32Bits(v) >>> 16);
}

export function bf16ToF32BitsRef(h: number): number {
  return (h << 16) >>> 0;
}

/**
 * int8 per-row absmax: scale_r = f32(max|x_r| / 127), q = clamp(roundHalfEven(f32(x/scale)), ±127),
 * q = 0 where the scale is 0. x is (R,C); throws on NaN/Inf.
 */
export function quantizeInt8RowsRef(
  x: Float32Array,
  R: number,
  C: number,
): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(R * C), scales = new Float32Array(R);
  for (let r = 0; r < R; r++) {
    let amax = 0;
    for (let c = 0; c < C; c++) {
      const v = x[r * C + c];
      if (!Number.isFinite(v)) throw new Error(`non-finite at row ${r}`);
      amax = Math.max(amax, Math.abs(v));
    }
    const scale = Math.fround(amax / 127);
    scales[r] = scale;
    if (scale === 0) continue;
    for (let c = 0; c < C; c++) {
      const t = roundHalfEven(Math.fround(x[r * C + c] / scale));
      q[r * C + c] = Math.max(-127, Math.min(127, t));
    }
  }
  return { q, scales };
}

export function dequantizeInt8RowsRef(
  q: Int8Array,
  scales: Float32Array,
  R: number,
  C: number,
): Float32Array {
  const out = new Float32Array(R * C);
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) out[r * C + c] = q[r * C + c] * scales[r];
  }
  return out;
}

/** Indices of the k largest |y| (ties: lower index first), ascending. */
export function topkSelectRef(y: Float32Array, k: number): number[] {
  const idx = Array.from(y.keys());
  idx.sort((a, b) => Math.abs(y[b]) - Math.abs(y[a]) || a - b);
  return idx.slice(0, k).sort((a, b) => a - b);
}

function pushVarint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/** f16 bits of a top-k value: clamped to ±65504 first. */
export function topkValueBitsRef(v: number): number {
  return f32ToF16BitsRef(f32Bits(Math.max(-65504, Math.min(65504, v))));
}

/** Payload: varint n | varint k | k × f16 (LE) | k × varint delta (first = index). */
export function topkEncodeRef(y: Float32Array, k: number): Uint8Array {
  const sel = topkSelectRef(y, k);
  const bytes: number[] = [];
  pushVarint(bytes, y.length);
  pushVarint(bytes, k);
  for (const i of sel) {
    const h = topkValueBitsRef(y[i]);
    bytes.push(h & 0xff, h >>> 8);
  }
  sel.forEach((i, j) => pushVarint(bytes, j === 0 ? i : i - sel[j - 1]));
  return new Uint8Array(bytes);
}

/** Dense decode of a well-formed payload (no validation: tests feed it encoder output). */
export function topkDecodeRef(bytes: Uint8Array, n: number): Float32Array {
  let p = 0;
  const read = (): number => {
    let v = 0, s = 1;
    for (;;) {
      const b = bytes[p++];
      v += (b & 0x7f) * s;
      s *= 128;
      if (b < 0x80) return v;
    }
  };
  const out = new Float32Array(n);
  if (read() !== n) throw new Error("n mismatch");
  const k = read();
  const vals = p;
  p += 2 * k;
  let idx = 0;
  for (let j = 0; j < k; j++) {
    const d = read();
    idx = j === 0 ? d : idx + d;
    out[idx] = f16ValueRef(bytes[vals + 2 * j] | (bytes[vals + 2 * j + 1] << 8));
  }
  return out;
}

/**
 * Error feedback: y = f32(x + residual), payload = encode(y),
 * residual' = f32(y − decode(payload)). Returns the payload and residual'.
 */
export function topkFeedbackRef(
  x: Float32Array,
  residual: Float32Array,
  k: number,
): { bytes: Uint8Array; residual: Float32Array } {
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i] + residual[i];
  const bytes = topkEncodeRef(y, k);
  const dec = topkDecodeRef(bytes, x.length);
  const r = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) r[i] = y[i] - dec[i];
  return { bytes, residual: r };
}

/** Bytes of the unsigned LEB128 encoding of v. */
export function varintLength(v: number): number {
  let len = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    len++;
  }
  return len;
}
