/**
 * Plain-loop softmax cross-entropy reference (f64), used only by tests.
 * logits (N,V), targets (N) with -1 = ignored.
 */
type Arr = ArrayLike<number>;

/** Per-row losses (0 where ignored) and their mean over counted rows. */
export function crossEntropyForwardRef(
  logits: Arr,
  targets: Arr,
): { losses: Float64Array; mean: number; count: number } {
  const N = targets.length, V = logits.length / N;
  const losses = new Float64Array(N);
  let sum = 0, count = 0;
  for (let r = 0; r < N; r++) {
    const t = targets[r];
    if (t === -1) continue;
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * V + i]);
    let z = 0;
    for (let i = 0; i < V; i++) z += Math.exp(logits[r * V + i] - max);
    losses[r] = max + Math.log(z) - logits[r * V + t];
    sum += losses[r];
    count++;
  }
  return { losses, mean: count > 0 ? sum / count : NaN, count };
}

/** scale·(softmax − onehot), zero rows where ignored. */
export function crossEntropyBackwardRef(logits: Arr, targets: Arr, scale: number): Float64Array {
  const N = targets.length, V = logits.length / N;
  const d = new Float64Array(N * V);
  for (let r = 0; r < N; r++) {
    const t = targets[r];
    if (t === -1) continue;
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * V + i]);
    let z = 0;
    for (let i = 0; i < V; i++) z += Math.exp(logits[r * V + i] - max);
    for (let i = 0; i < V; i++) {
      d[r * V + i] = scale * (Math.exp(logits[r * V + i] - max) / z - (i === t ? 1 : 0));
    }
  }
  return d;
}
