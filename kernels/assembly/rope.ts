// Rotary position embedding (RoPE), in place, in both layouts of the head dim:
//   interleaved (llama2.c): pairs (2i, 2i+1);  rotate-half (HF): pairs (i, i+hs/2).
// Pair i at position p turns by angle p·θ^(-2i/hs). The host precomputes the
// table (P, hs): per position hs/2 cosines then hs/2 sines (in f64, rounded once).
// Backward is the inverse rotation of the gradient.
import { madd } from "./common";

/** Rotates every row of hs at positions pos0 + t; sign = +1 forward, -1 inverse. */
// @ts-ignore: decorator
@inline function rope(
  x: usize, table: usize, B: i32, T: i32, NH: i32, hs: i32, pos0: i32, rotateHalf: i32, sign: f32,
): void {
  const half = hs >> 1;
  const rowBytes = <usize>hs << 2;
  // interleaved: out = x·[c,c] + swap(x)·[-s,s] (forward)
  const pairSign = f32x4(-1, 1, -1, 1);
  const vsign = f32x4.mul(f32x4.splat(sign), pairSign);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const cosp = table + <usize>(pos0 + t) * rowBytes;
      const sinp = cosp + (<usize>half << 2);
      const tok = x + (<usize>(b * T + t) * <usize>NH) * rowBytes;
      for (let h = 0; h < NH; h++) {
        const row = tok + <usize>h * rowBytes;
        let i = 0;
        if (rotateHalf) {
          const vs = f32x4.splat(sign);
          const hi = row + (<usize>half << 2);
          for (; i + 4 <= half; i += 4) {
            const o = <usize>i << 2;
            const a = v128.load(row + o), bb = v128.load(hi + o);
            const c = v128.load(cosp + o), s = f32x4.mul(v128.load(sinp + o), vs);
            v128.store(row + o, madd(bb, f32x4.neg(s), f32x4.mul(a, c)));
            v128.store(hi + o, madd(a, s, f32x4.mul(bb, c)));
          }
          for (; i < half; i++) {
            const o = <usize>i << 2;
            const a = load<f32>(row + o), bb = load<f32>(hi + o);
            const c = load<f32>(cosp + o), s = load<f32>(sinp + o) * sign;
            store<f32>(row + o, a * c - bb * s);
            store<f32>(hi + o, bb * c + a * s);
          }
        } else {
          for (; i + 2 <= half; i += 2) {
            const o = <usize>i << 2;
            const xv = v128.load(row + (o << 1));
            const c2 = v128.load64_zero(cosp + o), s2 = v128.load64_zero(sinp + o);
            const c = f32x4.shuffle(c2, c2, 0, 0, 1, 1);
            const s = f32x4.mul(f32x4.shuffle(s2, s2, 0, 0, 1, 1), vsign);
            v128.store(row + (o << 1), madd(f32x4.shuffle(xv, xv, 1, 0, 3, 2), s, f32x4.mul(xv, c)));
          }
          for (; i < half; i++) {
            const o = <usize>i << 2;
            const p = row + (o << 1);
            const a = load<f32>(p), bb = load<f32>(p, 4);
            const c = load<f32>(cosp + o), s = load<f32>(sinp + o) * sign;
            store<f32>(p, a * c - bb * s);
            store<f32>(p, bb * c + a * s, 4);
          }
        }
      }
    }
  }
}

/**
 * x is (B,T,NH,hs) (q with NH heads, or k with NKV heads), rotated in place at
 * positions pos0..pos0+T-1; table is (P,hs) with P ≥ pos0+T; hs even.
 * rotateHalf = 0: interleaved pairs (llama2.c); 1: rotate-half (HF).
 */
export function rope_forward(
  x: usize, table: usize, B: i32, T: i32, NH: i32, hs: i32, pos0: i32, rotateHalf: i32,
): void {
  rope(x, table, B, T, NH, hs, pos0, rotateHalf, 1);
}

/** dx is (B,T,NH,hs), the gradient at the rotated output; turned back in place. */
export function rope_backward(
  dx: usize, table: usize, B: i32, T: i32, NH: i32, hs: i32, pos0: i32, rotateHalf: i32,
): void {
  rope(dx, table, B, T, NH, hs, pos0, rotateHalf, -1);
}
