/** Plain-loop SwiGLU reference (f64), used only by tests: h = silu(g)·u. */
type Arr = ArrayLike<number>;

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export function swigluForwardRef(g: Arr, u: Arr): Float64Array {
  const h = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) h[i] = g[i] * sigmoid(g[i]) * u[i];
  return h;
}

/** dg, du given dh = ∂L/∂h. */
export function swigluBackwardRef(
  dh: Arr,
  g: Arr,
  u: Arr,
): { dg: Float64Array; du: Float64Array } {
  const dg = new Float64Array(g.length), du = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    const s = sigmoid(g[i]);
    du[i] = dh[i] * g[i] * s;
    dg[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s));
  }
  return { dg, du };
}
