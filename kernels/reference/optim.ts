/**
 * Slow, clear references for the optimizer kernels (tests only). State is kept
 * in Float32Array like the kernels keep it; the arithmetic of one step is f64.
 */

export interface AdamWRefConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count t. */
  step: number;
}

/**
 * One AdamW step exactly as PyTorch's `torch.optim.AdamW` (decoupled decay):
 * θ ← θ·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
 * θ ← θ − lr/(1−β1^t) · m / (√v/√(1−β2^t) + eps). All vectors are (n).
 */
export function adamwStepRef(
  param: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  c: AdamWRefConfig,
): void {
  const bc1 = 1 - Math.pow(c.beta1, c.step);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(c.beta2, c.step));
  for (let i = 0; i < param.length; i++) {
    const g = grad[i];
    const p = param[i] * (1 - c.lr * c.weightDecay);
    const mi = c.beta1 * m[i] + (1 - c.beta1) * g;
    const vi = c.beta2 * v[i] + (1 - c.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = p - (c.lr / bc1) * mi / (Math.sqrt(vi) / bc2Sqrt + c.eps);
  }
}

/** Σ x² in f64. x is (n). */
export function sumSquaresRef(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return s;
}

/**
 * Global-norm clipping as `torch.nn.utils.clip_grad_norm_`: total = ‖concat(grads)‖₂,
 * grads ·= min(1, maxNorm/(total + 1e-6)). Returns the pre-clip norm.
 */
export function clipGradNormRef(grads: Float32Array[], maxNorm: number): number {
  let s = 0;
  for (const g of grads) s += sumSquaresRef(g);
  const norm = Math.sqrt(s);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    const c = Math.fround(coef);
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i] = g[i] * c;
  }
  return norm;
}
