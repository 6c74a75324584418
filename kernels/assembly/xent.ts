// Softmax cross-entropy over the vocabulary, numerically stable (the row max
// is subtracted before exp). A target outside [0,V) (-1 by convention) ignores
// its row: loss 0 and a zero gradient row.
import { exp4, exp1 } from "./vmath";

/** Row max over V floats. */
// @ts-ignore: decorator
@inline function rowMax(x: usize, V: i32): f32 {
  let vm = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 4 <= V; i += 4) vm = f32x4.max(vm, v128.load(x + (<usize>i << 2)));
  let m = max(max(f32x4.extract_lane(vm, 0), f32x4.extract_lane(vm, 1)),
    max(f32x4.extract_lane(vm, 2), f32x4.extract_lane(vm, 3)));
  for (; i < V; i++) m = max(m, load<f32>(x + (<usize>i << 2)));
  return m;
}

/** Σ e^(x − m) over V floats, two vector accumulators. */
// @ts-ignore: decorator
@inline function rowSumExp(x: usize, m: f32, V: i32): f32 {
  const vm = f32x4.splat(m);
  let s0 = f32x4.splat(0), s1 = s0;
  let i = 0;
  for (; i + 8 <= V; i += 8) {
    const o = <usize>i << 2;
    s0 = f32x4.add(s0, exp4(f32x4.sub(v128.load(x + o), vm)));
    s1 = f32x4.add(s1, exp4(f32x4.sub(v128.load(x + o, 16), vm)));
  }
  for (; i + 4 <= V; i += 4) s0 = f32x4.add(s0, exp4(f32x4.sub(v128.load(x + (<usize>i << 2)), vm)));
  const s = f32x4.add(s0, s1);
  let sum = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) +
    f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; i < V; i++) sum += exp1(load<f32>(x + (<usize>i << 2)) - m);
  return sum;
}

/**
 * logits is (B·T,V) = (N,V), targets is (N) int32; losses (N) receives
 * −log softmax(logits)[target], 0 for ignored rows.
 */
export function crossentropy_forward(losses: usize, logits: usize, targets: usize, N: i32, V: i32): void {
  const rowBytes = <usize>V << 2;
  for (let r = 0; r < N; r++) {
    const x = logits + <usize>r * rowBytes;
    const target = load<i32>(targets + (<usize>r << 2));
    let loss: f32 = 0;
    if (target >= 0 && target < V) {
      const m = rowMax(x, V);
      const sum = rowSumExp(x, m, V);
      loss = <f32>(<f64>m - <f64>load<f32>(x + (<usize>target << 2)) + Math.log(<f64>sum));
    }
    store<f32>(losses + (<usize>r << 2), loss);
  }
}

/**
 * logits is (N,V), targets (N) int32; dlogits (N,V) = scale·(softmax(logits) −
 * onehot(target)), zero rows where ignored. Recomputes the softmax (nothing is
 * saved by the forward). dlogits may be logits itself (in place, saving N·V
 * floats). losses (N), when not 0, also receives the forward's losses.
 */
export function crossentropy_backward(
  dlogits: usize, losses: usize, logits: usize, targets: usize, N: i32, V: i32, scale: f32,
): void {
  const rowBytes = <usize>V << 2;
  for (let r = 0; r < N; r++) {
    const x = logits + <usize>r * rowBytes;
    const dx = dlogits + <usize>r * rowBytes;
    const target = load<i32>(targets + (<usize>r << 2));
    if (target < 0 || target >= V) {
      memory.fill(dx, 0, rowBytes);
      if (losses) store<f32>(losses + (<usize>r << 2), 0);
      continue;
    }
    const m = rowMax(x, V);
    const sum = rowSumExp(x, m, V);
    const xt = load<f32>(x + (<usize>target << 2));
    if (losses) store<f32>(losses + (<usize>r << 2), <f32>(<f64>m - <f64>xt + Math.log(<f64>sum)));
    const c: f32 = scale / sum;
    const vm = f32x4.splat(m), vc = f32x4.splat(c);
    let i = 0;
    for (; i + 4 <= V; i += 4) {
      const o = <usize>i << 2;
      v128.store(dx + o, f32x4.mul(exp4(f32x4.sub(v128.load(x + o), vm)), vc));
    }
    for (; i < V; i++) {
      const o = <usize>i << 2;
      store<f32>(dx + o, exp1(load<f32>(x + o) - m) * c);
    }
    const t = dx + (<usize>target << 2);
    // p_t − 1 from the recomputed exp, so in-place use never reads a written slot
    store<f32>(t, (exp1(xt - m) / sum - 1) * scale);
  }
}
