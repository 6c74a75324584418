/**
 * RMSNorm (Llama) host wrappers: rows of C = weight.length, N = B·T rows.
 * The forward saves rstd (N) for the backward.
 */
import type { F32, Kernels } from "./core.ts";
import { expectDims, expectLength, quotient } from "./dims.ts";

/** out (N,C) = inp (N,C) / sqrt(mean(inp²) + eps) · weight (C); rstd (N) is saved. */
export function rmsnormForward(
  k: Kernels,
  out: F32,
  rstd: F32,
  inp: F32,
  weight: F32,
  eps = 1e-5,
): void {
  const C = weight.length;
  expectDims("rmsnormForward", { C });
  const N = quotient("rmsnormForward", "inp", inp.length, C);
  expectLength(k, "rmsnormForward", "out", out, N * C, "N·C");
  expectLength(k, "rmsnormForward", "rstd", rstd, N, "N");
  k.exports.rmsnorm_forward(out.ptr, rstd.ptr, inp.ptr, weight.ptr, N, C, eps);
}

export interface RmsnormBackwardOptions {
  /** Add into dinp instead of overwriting it (the residual stream's gradient). */
  accumulate?: boolean;
}

/**
 * dinp (N,C) = ∂L/∂inp given dout (N,C); dweight (C) += ∂L/∂weight unless it is
 * null (frozen weight). rstd (N) comes from the forward.
 */
export function rmsnormBackward(
  k: Kernels,
  dinp: F32,
  dweight: F32 | null,
  dout: F32,
  inp: F32,
  weight: F32,
  rstd: F32,
  { accumulate = false }: RmsnormBackwardOptions = {},
): void {
  const C = weight.length;
  expectDims("rmsnormBackward", { C });
  const N = quotient("rmsnormBackward", "inp", inp.length, C);
  expectLength(k, "rmsnormBackward", "dinp", dinp, N * C, "N·C");
  expectLength(k, "rmsnormBackward", "dout", dout, N * C, "N·C");
  expectLength(k, "rmsnormBackward", "rstd", rstd, N, "N");
  if (dweight !== null) expectLength(k, "rmsnormBackward", "dweight", dweight, C, "C");
  k.exports.rmsnorm_backward(
    dinp.ptr,
    dweight === null ? 0 : dweight.ptr,
    dout.ptr,
    inp.ptr,
    weight.ptr,
    rstd.ptr,
    N,
    C,
    accumulate ? 1 : 0,
  );
}
