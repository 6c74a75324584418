/**
 * Plain-loop causal grouped-query attention reference (f64), used only by
 * tests. q (B,T,NH,hs), k, v (B,T,NKV,hs); head h reads kv head h/(NH/NKV).
 */
type Arr = ArrayLike<number>;

export interface AttentionShapeRef {
  B: number;
  T: number;
  NH: number;
  NKV: number;
  hs: number;
}

/** out (B,T,NH,hs) and att (B,NH,T,T) (zeros above the diagonal). */
export function attentionForwardRef(
  q: Arr,
  k: Arr,
  v: Arr,
  { B, T, NH, NKV, hs }: AttentionShapeRef,
): { out: Float64Array; att: Float64Array } {
  const out = new Float64Array(B * T * NH * hs), att = new Float64Array(B * NH * T * T);
  const scale = 1 / Math.sqrt(hs), group = NH / NKV;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const kvh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const qi = ((b * T + t) * NH + h) * hs;
        const row = ((b * NH + h) * T + t) * T;
        let max = -Infinity;
        for (let j = 0; j <= t; j++) {
          const ki = ((b * T + j) * NKV + kvh) * hs;
          let s = 0;
          for (let d = 0; d < hs; d++) s += q[qi + d] * k[ki + d];
          att[row + j] = s * scale;
          max = Math.max(max, s * scale);
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) sum += att[row + j] = Math.exp(att[row + j] - max);
        for (let j = 0; j <= t; j++) {
          att[row + j] /= sum;
          const vi = ((b * T + j) * NKV + kvh) * hs;
          for (let d = 0; d < hs; d++) out[qi + d] += att[row + j] * v[vi + d];
        }
      }
    }
  }
  return { out, att };
}

/** dq (B,T,NH,hs), dk and dv (B,T,NKV,hs) given dout = ∂L/∂out. */
export function attentionBackwardRef(
  dout: Arr,
  q: Arr,
  k: Arr,
  v: Arr,
  shape: AttentionShapeRef,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { B, T, NH, NKV, hs } = shape;
  const { att } = attentionForwardRef(q, k, v, shape);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const scale = 1 / Math.sqrt(hs), group = NH / NKV;
  const dp = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const kvh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const qi = ((b * T + t) * NH + h) * hs;
        const row = ((b * NH + h) * T + t) * T;
        let pdp = 0;
        for (let j = 0; j <= t; j++) {
          const vi = ((b * T + j) * NKV + kvh) * hs;
          let s = 0;
          for (let d = 0; d < hs; d++) {
            s += dout[qi + d] * v[vi + d];
            dv[vi + d] += att[row + j] * dout[qi + d];
          }
          dp[j] = s;
          pdp += att[row + j] * s;
        }
        for (let j = 0; j <= t; j++) {
          const ds = att[row + j] * (dp[j] - pdp) * scale;
          const ki = ((b * T + j) * NKV + kvh) * hs;
          for (let d = 0; d < hs; d++) {
            dq[qi + d] += ds * k[ki + d];
            dk[ki + d] += ds * q[qi + d];
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}
