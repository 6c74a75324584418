/**
 * Optimizer steps over flat f32 tensors in wasm memory: AdamW (PyTorch
 * semantics) and global-norm gradient clipping.
 */
import type { F32, Kernels } from "./core.ts";

/** One flat parameter tensor with its gradient and AdamW moments, all (n). */
export interface AdamWState {
  param: F32;
  grad: F32;
  m: F32;
  v: F32;
}

/** AdamW hyper-parameters; defaults are PyTorch's. */
export interface AdamWConfig {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** 1-based step count t, used for the bias corrections 1 − β^t. */
  step: number;
}

/** Element counts from which AdamW is split over threads. */
const PARALLEL_MIN = 1 << 16;

/**
 * One AdamW step in place, as `torch.optim.AdamW`:
 * θ ← θ·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
 * θ ← θ − lr/(1−β1^t) · m / (√v/√(1−β2^t) + eps). param, grad, m, v are (n).
 */
export function adamwStep(k: Kernels, s: AdamWState, c: AdamWConfig): void {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01, step } = c;
  const n = s.param.length;
  for (const name of ["grad", "m", "v"] as const) {
    if (s[name].length !== n) {
      throw new RangeError(
        `adamwStep: ${name} has ${s[name].length} elements, expected param.length = ${n}`,
      );
    }
  }
  for (const name of ["param", "grad", "m", "v"] as const) {
    if (s[name].kernels !== k) throw new Error(`adamwStep: ${name} belongs to another Kernels`);
  }
  if (!Number.isInteger(step) || step < 1) {
    throw new RangeError(`adamwStep: step must be an integer ≥ 1 (1-based), got ${step}`);
  }
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
    throw new RangeError(`adamwStep: betas must lie in [0, 1), got (${beta1}, ${beta2})`);
  }
  if (!Number.isFinite(lr) || !(eps > 0) || !Number.isFinite(weightDecay)) {
    throw new RangeError(
      `adamwStep: lr and weightDecay must be finite and eps > 0, got lr=${lr} eps=${eps} weightDecay=${weightDecay}`,
    );
  }
  // Bias corrections in f64 on the host; the kernel gets the finished factors.
  const stepSize = lr / (1 - Math.pow(beta1, step));
  const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
  const decay = 1 - lr * weightDecay;
  const args = (start: number, count: number) => [
    s.param.ptr + 4 * start,
    s.grad.ptr + 4 * start,
    s.m.ptr + 4 * start,
    s.v.ptr + 4 * start,
    count,
    beta1,
    beta2,
    1 - beta1,
    1 - beta2,
    eps,
    decay,
    stepSize,
    bc2Sqrt,
  ];
  const t = k.threads;
  if (t === 1 || n < PARALLEL_MIN) {
    k.exports.optimAdamw(...args(0, n));
    return;
  }
  const chunk = Math.ceil(n / t / 4) * 4;
  const jobs: number[][] = [];
  for (let s0 = 0; s0 < n; s0 += chunk) jobs.push(args(s0, Math.min(chunk, n - s0)));
  k.parallel("optimAdamw", jobs);
}

/** Σ x² accumulated in f64. x is (n). */
export function sumSquares(k: Kernels, x: F32): number {
  if (x.kernels !== k) throw new Error("sumSquares: x belongs to another Kernels");
  return k.exports.optimSumSquares(x.ptr, x.length);
}

export interface ClipOptions {
  /** Throw when the total norm is NaN/Inf instead of returning it (grads untouched either way). */
  errorIfNonfinite?: boolean;
}

/**
 * Global-norm clipping over several tensors, as `torch.nn.utils.clip_grad_norm_`:
 * norm = ‖concat(grads)‖₂ (f64), and when maxNorm/(norm + 1e-6) < 1 every grad is
 * scaled by it in place. Returns the pre-clip norm. A NaN/Inf norm leaves the
 * grads untouched and is returned (so the caller can skip the step), or throws
 * with `errorIfNonfinite`.
 */
export function clipGradNorm(
  k: Kernels,
  grads: readonly F32[],
  maxNorm: number,
  opts: ClipOptions = {},
): number {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  let total = 0;
  for (const g of grads) total += sumSquares(k, g);
  const norm = Math.sqrt(total);
  if (!Number.isFinite(norm)) {
    if (opts.errorIfNonfinite) {
      throw new RangeError(
        `clipGradNorm: the total gradient norm is ${norm}; gradients left as is`,
      );
    }
    return norm;
  }
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const g of grads) k.exports.optimScale(g.ptr, coef, g.length);
  }
  return norm;
}
