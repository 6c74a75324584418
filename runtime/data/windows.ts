/**
 * Token windows for evaluation and training (DLORA.md §7). Pure functions of ids.
 */

/**
 * Held-out NLL windows: consecutive windows of T+1 tokens overlapping by one (inputs
 * w[0:T], targets w[1:T+1]); a last partial window counts if it has ≥ 2 tokens. Every
 * token after the first is predicted exactly once.
 */
export function evalWindows(ids: ArrayLike<number>, T: number): Int32Array[] {
  if (!Number.isInteger(T) || T < 1) throw new RangeError(`sequence length must be ≥ 1, got ${T}`);
  const out: Int32Array[] = [];
  for (let start = 0; start + 1 < ids.length; start += T) {
    const end = Math.min(start + T + 1, ids.length);
    out.push(Int32Array.from({ length: end - start }, (_, i) => ids[start + i]));
  }
  return out;
}

/**
 * A micro-batch of B windows of T+1 tokens drawn from `ids` (packed text), as inputs
 * (B·T) and targets (B·T). Starts come from `rand` so a seed fixes the data order.
 */
export function sampleBatch(
  ids: ArrayLike<number>,
  B: number,
  T: number,
  rand: () => number,
): { inputs: Int32Array; targets: Int32Array } {
  if (ids.length < T + 1) {
    throw new RangeError(
      `training text has ${ids.length} tokens; a window of ${T + 1} needs more (lower --seq-len)`,
    );
  }
  const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const start = Math.floor(rand() * (ids.length - T));
    for (let t = 0; t < T; t++) {
      inputs[b * T + t] = ids[start + t];
      targets[b * T + t] = ids[start + t + 1];
    }
  }
  return { inputs, targets };
}
