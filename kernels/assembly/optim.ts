// Optimizer kernels: AdamW over a flat parameter vector, and the two pieces of
// global-norm gradient clipping (sum of squares, in-place scale).
// Every vector here is (n) f32; n is the element count of one flat tensor.
import { madd } from "./common";

/**
 * One AdamW step with PyTorch semantics (decoupled weight decay):
 *   param ·= decay                      decay = 1 − lr·wd
 *   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
 *   param −= stepSize · m / (√v / bc2Sqrt + eps)
 * where stepSize = lr/(1−β1^t), bc2Sqrt = √(1−β2^t), oneMinusBeta1/2 and decay
 * come from the host, computed in f64 there (1 − β in f32 from an f32 β would be
 * off by ~1e-5 relative for β = 0.999). param, grad, m, v are (n).
 */
export function optimAdamw(
  param: usize, grad: usize, m: usize, v: usize, n: i32,
  beta1: f32, beta2: f32, oneMinusBeta1: f32, oneMinusBeta2: f32,
  eps: f32, decay: f32, stepSize: f32, bc2Sqrt: f32,
): void {
  const vb1 = f32x4.splat(beta1), vb2 = f32x4.splat(beta2);
  const vc1 = f32x4.splat(oneMinusBeta1), vc2 = f32x4.splat(oneMinusBeta2);
  const veps = f32x4.splat(eps), vdecay = f32x4.splat(decay);
  const vstep = f32x4.splat(-stepSize), vbc2 = f32x4.splat(bc2Sqrt);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const g = v128.load(grad + o);
    const mi = madd(vb1, v128.load(m + o), f32x4.mul(vc1, g));
    const vi = madd(vb2, v128.load(v + o), f32x4.mul(vc2, f32x4.mul(g, g)));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(vi), vbc2), veps);
    const p = f32x4.mul(v128.load(param + o), vdecay);
    v128.store(param + o, madd(vstep, f32x4.div(mi, denom), p));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(grad + o);
    const mi = beta1 * load<f32>(m + o) + oneMinusBeta1 * g;
    const vi = beta2 * load<f32>(v + o) + oneMinusBeta2 * (g * g);
    store<f32>(m + o, mi);
    store<f32>(v + o, vi);
    const denom = Mathf.sqrt(vi) / bc2Sqrt + eps;
    store<f32>(param + o, load<f32>(param + o) * decay - stepSize * (mi / denom));
  }
}

/**
 * Σ x[i]² accumulated in f64 (each square of an f32 is exact in f64, so the
 * only error is the f64 summation). x is (n).
 */
export function optimSumSquares(x: usize, n: i32): f64 {
  let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    const u = v128.load(x + o), w = v128.load(x + o, 16);
    const u0 = f64x2.promote_low_f32x4(u), u1 = f64x2.promote_low_f32x4(i32x4.shuffle(u, u, 2, 3, 2, 3));
    const w0 = f64x2.promote_low_f32x4(w), w1 = f64x2.promote_low_f32x4(i32x4.shuffle(w, w, 2, 3, 2, 3));
    a0 = f64x2.add(a0, f64x2.mul(u0, u0));
    a1 = f64x2.add(a1, f64x2.mul(u1, u1));
    a2 = f64x2.add(a2, f64x2.mul(w0, w0));
    a3 = f64x2.add(a3, f64x2.mul(w1, w1));
  }
  const s = f64x2.add(f64x2.add(a0, a1), f64x2.add(a2, a3));
  let sum = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
  for (; i < n; i++) {
    const e = <f64>load<f32>(x + (<usize>i << 2));
    sum += e * e;
  }
  return sum;
}

/** x[i] ·= s in place. x is (n). */
export function optimScale(x: usize, s: f32, n: i32): void {
  const vs = f32x4.splat(s);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.mul(v128.load(x + o), vs));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, load<f32>(x + o) * s);
  }
}
