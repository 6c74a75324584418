// SwiGLU, the gated MLP activation of Llama: h = silu(g) ⊙ u with
// silu(g) = g·σ(g). g and u are the outputs of the gate and up projections.
import { madd } from "./common";
import { exp4 } from "./vmath";

// @ts-ignore: decorator
@inline function sigmoid4(g: v128): v128 {
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), exp4(f32x4.neg(g))));
}

// @ts-ignore: decorator
@inline function sigmoid1(g: f32): f32 {
  return f32x4.extract_lane(sigmoid4(f32x4.splat(g)), 0);
}

/**
 * g, u are (B,T,H), flattened to n = B·T·H; h is (B,T,H) and may alias g or u.
 */
export function swiglu_forward(h: usize, g: usize, u: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(g + o);
    v128.store(h + o, f32x4.mul(f32x4.mul(gv, sigmoid4(gv)), v128.load(u + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const gv = load<f32>(g + o);
    store<f32>(h + o, gv * sigmoid1(gv) * load<f32>(u + o));
  }
}

/**
 * dh, g, u are (B,T,H) flattened to n; dg, du (B,T,H) are overwritten and may
 * alias dh. With s = σ(g): du = dh·g·s, dg = dh·u·s·(1 + g·(1 − s)).
 */
export function swiglu_backward(dg: usize, du: usize, dh: usize, g: usize, u: usize, n: i32): void {
  const one = f32x4.splat(1);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(g + o), uv = v128.load(u + o), dhv = v128.load(dh + o);
    const s = sigmoid4(gv);
    const dsilu = f32x4.mul(s, madd(gv, f32x4.sub(one, s), one));
    v128.store(du + o, f32x4.mul(dhv, f32x4.mul(gv, s)));
    v128.store(dg + o, f32x4.mul(f32x4.mul(dhv, uv), dsilu));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const gv = load<f32>(g + o), uv = load<f32>(u + o), dhv = load<f32>(dh + o);
    const s = sigmoid1(gv);
    store<f32>(du + o, dhv * (gv * s));
    store<f32>(dg + o, dhv * uv * (s * (1 + gv * (1 - s))));
  }
}
