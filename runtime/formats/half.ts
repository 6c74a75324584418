/**
 * IEEE half (F16) and bfloat16 (BF16) ↔ f32, in plain TypeScript so every host can load
 * half-precision checkpoints. Widening is exact; narrowing rounds to nearest, ties to even.
 * Arrays are read from little-endian bytes at any alignment.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Every F16 bit pattern as an f32: widening by table lookup is exact and fast. */
let f16Table: Float32Array | null = null;
function table(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32Slow(h);
  return (f16Table = t);
}

function f16BitsToF32Slow(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function f16BitsToF32(h: number): number {
  return table()[h & 0xffff];
}

/** f32 → F16 bits, round to nearest even; overflow → ±Inf, NaN stays NaN. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: value = m·2^-24 with m = (1.mant as 24-bit int) >> (14 - e).
    if (e < -10) return sign;
    const full = mant | 0x800000, shift = 14 - e;
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1), halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (m & 1))) m++;
    return sign | m;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry rolls into the exponent, up to Inf
  return h;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** f32 → BF16 bits, round to nearest even; NaN stays (quiet) NaN. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff)) return (b >>> 16) | 0x40;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** n F16 values from little-endian bytes (any alignment) → f32. */
export function decodeF16(bytes: Uint8Array, n = bytes.length >> 1): Float32Array {
  checkLength(bytes, n * 2, "F16");
  const t = table(), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = t[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
  return out;
}

/** n BF16 values from little-endian bytes (any alignment) → f32. */
export function decodeBf16(bytes: Uint8Array, n = bytes.length >> 1): Float32Array {
  checkLength(bytes, n * 2, "BF16");
  const out = new Float32Array(n), bits = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) bits[i] = (bytes[2 * i] << 16) | (bytes[2 * i + 1] << 24);
  return out;
}

export function encodeF16(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    const h = f32ToF16Bits(values[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

export function encodeBf16(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    const h = f32ToBf16Bits(values[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** n f32 values from little-endian bytes (any alignment) → a fresh Float32Array. */
export function decodeF32(bytes: Uint8Array, n = bytes.length >> 2): Float32Array {
  checkLength(bytes, n * 4, "F32");
  if (littleEndian) {
    // Copying through bytes handles any alignment of the source view.
    const out = new Float32Array(n);
    new Uint8Array(out.buffer).set(bytes.subarray(0, n * 4));
    return out;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, n * 4), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
  return out;
}

/** f32 values → little-endian bytes (a copy). */
export function encodeF32(values: Float32Array): Uint8Array {
  if (littleEndian) {
    return new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice();
  }
  const out = new Uint8Array(values.length * 4), dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setFloat32(4 * i, values[i], true);
  return out;
}

function checkLength(bytes: Uint8Array, need: number, what: string): void {
  if (bytes.length < need) {
    throw new RangeError(`${what} decode: need ${need} bytes, got ${bytes.length}`);
  }
}
