// RMSNorm (Llama): out = x / sqrt(mean(x²) + eps) · weight over rows of C.
// Rows are N = B·T; rstd (N) is saved by the forward for the backward.
import { madd, hsum } from "./common";

/** 1 / sqrt(mean(x²) + eps) of one row, accumulated in f64 (the overflow path). */
function rstdF64(x: usize, C: i32, eps: f32): f64 {
  let ss: f64 = 0;
  for (let i = 0; i < C; i++) {
    const a = <f64>load<f32>(x + (<usize>i << 2));
    ss += a * a;
  }
  return 1 / Math.sqrt(ss / <f64>C + <f64>eps);
}

/**
 * inp is (N,C) with N = B·T, weight is (C); out is (N,C), rstd is (N).
 * out may alias inp.
 */
export function rmsnorm_forward(
  out: usize, rstd: usize, inp: usize, weight: usize, N: i32, C: i32, eps: f32,
): void {
  const rowBytes = <usize>C << 2;
  for (let r = 0; r < N; r++) {
    const x = inp + <usize>r * rowBytes;
    const o = out + <usize>r * rowBytes;
    let acc0 = f32x4.splat(0), acc1 = acc0;
    let i = 0;
    for (; i + 8 <= C; i += 8) {
      const a = v128.load(x + (<usize>i << 2));
      const b = v128.load(x + (<usize>i << 2), 16);
      acc0 = madd(a, a, acc0);
      acc1 = madd(b, b, acc1);
    }
    for (; i + 4 <= C; i += 4) {
      const a = v128.load(x + (<usize>i << 2));
      acc0 = madd(a, a, acc0);
    }
    let ss = hsum(f32x4.add(acc0, acc1));
    for (; i < C; i++) {
      const a = load<f32>(x + (<usize>i << 2));
      ss += a * a;
    }
    let s: f32 = 1 / Mathf.sqrt(ss / <f32>C + eps);
    // |x| past ~1.8e19 overflows the f32 sum of squares (s would be 0 and the row 0): redo the
    // row in f64, which holds the sum of any finite f32 squares. Non-finite x stays non-finite.
    if (!isFinite<f32>(ss)) s = <f32>rstdF64(x, C, eps);
    store<f32>(rstd + (<usize>r << 2), s);
    const vs = f32x4.splat(s);
    i = 0;
    for (; i + 4 <= C; i += 4) {
      const off = <usize>i << 2;
      v128.store(o + off, f32x4.mul(f32x4.mul(v128.load(x + off), vs), v128.load(weight + off)));
    }
    for (; i < C; i++) {
      const off = <usize>i << 2;
      store<f32>(o + off, load<f32>(x + off) * s * load<f32>(weight + off));
    }
  }
}

/**
 * dout, inp are (N,C), weight is (C), rstd is (N) from the forward.
 * dinp (N,C) is overwritten, or added to when accumulate ≠ 0 (residual stream).
 * dweight (C) is added to; pass 0 to skip it (frozen weight).
 * With s = rstd: dinp = s·dout·w − x · s³·Σ(dout·w·x)/C, dweight += Σ_rows dout·x·s.
 */
export function rmsnorm_backward(
  dinp: usize, dweight: usize, dout: usize, inp: usize, weight: usize, rstd: usize,
  N: i32, C: i32, accumulate: i32,
): void {
  const rowBytes = <usize>C << 2;
  for (let r = 0; r < N; r++) {
    const x = inp + <usize>r * rowBytes;
    const dy = dout + <usize>r * rowBytes;
    const dx = dinp + <usize>r * rowBytes;
    const s = load<f32>(rstd + (<usize>r << 2));
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= C; i += 4) {
      const off = <usize>i << 2;
      acc = madd(f32x4.mul(v128.load(dy + off), v128.load(weight + off)), v128.load(x + off), acc);
    }
    let dot = hsum(acc);
    for (; i < C; i++) {
      const off = <usize>i << 2;
      dot += load<f32>(dy + off) * load<f32>(weight + off) * load<f32>(x + off);
    }
    const c = s * s * s * dot / <f32>C;
    const vs = f32x4.splat(s), vc = f32x4.splat(-c);
    i = 0;
    for (; i + 4 <= C; i += 4) {
      const off = <usize>i << 2;
      const xv = v128.load(x + off);
      const dyv = v128.load(dy + off);
      let g = madd(xv, vc, f32x4.mul(f32x4.mul(dyv, v128.load(weight + off)), vs));
      if (accumulate) g = f32x4.add(g, v128.load(dx + off));
      v128.store(dx + off, g);
      if (dweight) {
        v128.store(dweight + off, madd(f32x4.mul(dyv, xv), vs, v128.load(dweight + off)));
      }
    }
    for (; i < C; i++) {
      const off = <usize>i << 2;
      const xv = load<f32>(x + off);
      const dyv = load<f32>(dy + off);
      let g = dyv * load<f32>(weight + off) * s - c * xv;
      if (accumulate) g += load<f32>(dx + off);
      store<f32>(dx + off, g);
      if (dweight) store<f32>(dweight + off, load<f32>(dweight + off) + dyv * xv * s);
    }
  }
}
