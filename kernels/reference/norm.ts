/** Plain-loop RMSNorm reference (f64), used only by tests. inp (N,C), weight (C). */
type Arr = ArrayLike<number>;

export function rmsnormForwardRef(
  inp: Arr,
  weight: Arr,
  eps = 1e-5,
): { out: Float64Array; rstd: Float64Array } {
  const C = weight.length, N = inp.length / C;
  const out = new Float64Array(N * C), rstd = new Float64Array(N);
  for (let r = 0; r < N; r++) {
    let ss = 0;
    for (let i = 0; i < C; i++) ss += inp[r * C + i] ** 2;
    const s = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = s;
    for (let i = 0; i < C; i++) out[r * C + i] = inp[r * C + i] * s * weight[i];
  }
  return { out, rstd };
}

/** Gradients of L given dout = ∂L/∂out. */
export function rmsnormBackwardRef(
  dout: Arr,
  inp: Arr,
  weight: Arr,
  eps = 1e-5,
): { dinp: Float64Array; dweight: Float64Array } {
  const C = weight.length, N = inp.length / C;
  const { rstd } = rmsnormForwardRef(inp, weight, eps);
  const dinp = new Float64Array(N * C), dweight = new Float64Array(C);
  for (let r = 0; r < N; r++) {
    const s = rstd[r];
    // out_i = w_i·x_i·s, ∂s/∂x_j = −s³·x_j/C
    let dot = 0;
    for (let i = 0; i < C; i++) dot += dout[r * C + i] * weight[i] * inp[r * C + i];
    for (let j = 0; j < C; j++) {
      const x = inp[r * C + j];
      dinp[r * C + j] = dout[r * C + j] * weight[j] * s - (s ** 3) * x * dot / C;
      dweight[j] += dout[r * C + j] * x * s;
    }
  }
  return { dinp, dweight };
}
