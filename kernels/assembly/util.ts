import { madd } from "./common";

/** y[n] += alpha·x[n]. x, y are (n). */
export function axpy(y: usize, x: usize, alpha: f32, n: i32): void {
  const va = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, madd(v128.load(x + o), va, v128.load(y + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(y + o) + alpha * load<f32>(x + o));
  }
}

/** x[n] = value. */
export function fill(x: usize, value: f32, n: i32): void {
  const v = f32x4.splat(value);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(x + (<usize>i << 2), v);
  for (; i < n; i++) store<f32>(x + (<usize>i << 2), value);
}
