/**
 * Softmax cross-entropy host wrappers over logits (N,V), N = B·T, with int32
 * targets (N); a target of -1 ignores its position. Nothing is saved between
 * forward and backward: the backward recomputes the (stable) softmax and may
 * write the gradient over the logits in place.
 */
import type { F32, Kernels, WasmArray } from "./core.ts";
import { expectArray, expectDims, expectLength, quotient, splitRange, threadsFor } from "./dims.ts";

/** Rows below this much work per thread stay on one thread (exp ≈ 4 units). */
const MIN_THREAD_WORK = 1 << 16;

export interface LossSummary {
  /** Mean loss over the counted positions (NaN when every target is ignored). */
  meanLoss: number;
  /** Positions whose target is not -1. */
  count: number;
}

function checkTargets(kernel: string, targets: Int32Array, V: number): number {
  let count = 0;
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i];
    if (t === -1) continue;
    if (t < 0 || t >= V) {
      throw new RangeError(
        `${kernel}: targets[${i}] = ${t} is outside the vocabulary [0, ${V}) and is not -1 (ignore)`,
      );
    }
    count++;
  }
  return count;
}

function shapes(
  k: Kernels,
  kernel: string,
  logits: F32,
  targets: WasmArray<"i32">,
): { N: number; V: number; count: number } {
  const N = targets.length;
  expectDims(kernel, { N });
  expectArray(k, kernel, "targets", targets, "i32");
  expectArray(k, kernel, "logits", logits);
  const V = quotient(kernel, "logits", logits.length, N);
  return { N, V, count: checkTargets(kernel, targets.data, V) };
}

/** Mean of losses (N) over the positions whose target is not -1. */
export function meanLoss(losses: ArrayLike<number>, targets: ArrayLike<number>): LossSummary {
  let sum = 0, count = 0;
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] === -1) continue;
    sum += losses[i];
    count++;
  }
  return { meanLoss: count > 0 ? sum / count : NaN, count };
}

function rowJobs(k: Kernels, N: number, V: number): [number, number][] {
  return splitRange(N, threadsFor(k, N, 4 * V, MIN_THREAD_WORK));
}

/** losses (N) = −log softmax(logits)[target] (0 where ignored); returns the mean. */
export function crossEntropyForward(
  k: Kernels,
  losses: F32,
  logits: F32,
  targets: WasmArray<"i32">,
): LossSummary {
  const name = "crossEntropyForward";
  const { N, V } = shapes(k, name, logits, targets);
  expectLength(k, name, "losses", losses, N, "N");
  k.parallel(
    "crossentropy_forward",
    rowJobs(k, N, V).map((
      [r0, r1],
    ) => [losses.ptr + r0 * 4, logits.ptr + r0 * V * 4, targets.ptr + r0 * 4, r1 - r0, V]),
  );
  return meanLoss(losses.data, targets.data);
}

export interface CrossEntropyBackwardOptions {
  /** Gradient scale; default 1/count of non-ignored targets (the mean loss's gradient). */
  scale?: number;
  /** Also fill these (N) with the per-position losses (saves a forward call). */
  losses?: F32;
}

/**
 * dlogits (N,V) = scale·(softmax(logits) − onehot(target)), zero rows where
 * ignored. dlogits may be logits itself (in place). Returns the count of
 * non-ignored targets.
 */
export function crossEntropyBackward(
  k: Kernels,
  dlogits: F32,
  logits: F32,
  targets: WasmArray<"i32">,
  { scale, losses }: CrossEntropyBackwardOptions = {},
): number {
  const name = "crossEntropyBackward";
  const { N, V, count } = shapes(k, name, logits, targets);
  expectLength(k, name, "dlogits", dlogits, N * V, "N·V");
  if (losses !== undefined) expectLength(k, name, "losses", losses, N, "N");
  const s = scale ?? (count > 0 ? 1 / count : 0);
  k.parallel(
    "crossentropy_backward",
    rowJobs(k, N, V).map(([r0, r1]) => [
      dlogits.ptr + r0 * V * 4,
      losses === undefined ? 0 : losses.ptr + r0 * 4,
      logits.ptr + r0 * V * 4,
      targets.ptr + r0 * 4,
      r1 - r0,
      V,
      s,
    ]),
  );
  return count;
}
