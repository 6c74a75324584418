/**
 * Plain-loop RoPE reference (f64), used only by tests. x is (B,T,NH,hs);
 * pair i of a head turns by angle (pos0+t)·θ^(-2i/hs).
 */
export type RopeStyleRef = "interleaved" | "rotate-half";

export interface RopeShapeRef {
  B: number;
  T: number;
  NH: number;
  hs: number;
  pos0?: number;
  style?: RopeStyleRef;
  theta?: number;
}

/** Rotated copy of x; inverse = true turns the other way (the backward). */
export function ropeRef(
  x: ArrayLike<number>,
  { B, T, NH, hs, pos0 = 0, style = "interleaved", theta = 10000 }: RopeShapeRef,
  inverse = false,
): Float64Array {
  const out = Float64Array.from(x);
  const half = hs / 2;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const base = ((b * T + t) * NH + h) * hs;
        for (let i = 0; i < half; i++) {
          const angle = (pos0 + t) * Math.pow(theta, (-2 * i) / hs) * (inverse ? -1 : 1);
          const c = Math.cos(angle), s = Math.sin(angle);
          const ia = style === "interleaved" ? base + 2 * i : base + i;
          const ib = style === "interleaved" ? base + 2 * i + 1 : base + half + i;
          const a = x[ia], bb = x[ib];
          out[ia] = a * c - bb * s;
          out[ib] = a * s + bb * c;
        }
      }
    }
  }
  return out;
}
