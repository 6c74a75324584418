// Vector math for the softmax-style kernels (attention, cross-entropy, SwiGLU):
// a SIMD e^x so their inner loops never fall back to scalar Math.exp.
import { madd } from "./common";

// Below this e^x is under FLT_MIN: the result is flushed to 0.
const EXP_LO: f32 = -87.33654;
// Above this e^x would overflow 2^n with n = 128; clamped so sigmoid stays finite.
const EXP_HI: f32 = 88.0;

/**
 * e^x per lane (Cephes expf: Cody–Waite range reduction to |r| ≤ ln2/2, then a
 * degree-7 polynomial). Relative error < 1e-7 (measured 8.4e-8, about 1 ulp)
 * on [-87.3, 88]; 0 below -87.34, e^88 above 88; NaN stays NaN.
 */
// @ts-ignore: decorator
@inline export function exp4(x: v128): v128 {
  // pmax/pmin are single instructions and keep a NaN x (it fails both compares)
  const xc = f32x4.pmin(f32x4.pmax(x, f32x4.splat(EXP_LO)), f32x4.splat(EXP_HI));
  // n = round(x·log2 e) by the 1.5·2^23 trick: the sum's low mantissa bits hold n
  const magic = f32x4.splat(12582912.0);
  const t = madd(xc, f32x4.splat(1.4426950408889634), magic);
  const n = f32x4.sub(t, magic);
  // r = x - n·ln2, ln2 split in two so r keeps full precision
  let r = madd(n, f32x4.splat(-0.693359375), xc);
  r = madd(n, f32x4.splat(2.12194440e-4), r);
  let p = f32x4.splat(1.9875691500e-4);
  p = madd(p, r, f32x4.splat(1.3981999507e-3));
  p = madd(p, r, f32x4.splat(8.3334519073e-3));
  p = madd(p, r, f32x4.splat(4.1665795894e-2));
  p = madd(p, r, f32x4.splat(1.6666665459e-1));
  p = madd(p, r, f32x4.splat(5.0000001201e-1));
  const y = f32x4.add(madd(p, f32x4.mul(r, r), r), f32x4.splat(1));
  // 2^n from t's bits: (bits + 127) << 23; the magic's own bits shift out
  const pow2 = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(y, pow2), f32x4.lt(x, f32x4.splat(EXP_LO)));
}

/** Scalar e^x with exactly the vector version's rounding (for loop tails). */
// @ts-ignore: decorator
@inline export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}

/** out[n] = e^inp[n]: exposes exp4 so tests can measure its accuracy. */
export function vexp(out: usize, inp: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, exp4(v128.load(inp + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, exp1(load<f32>(inp + o)));
  }
}
