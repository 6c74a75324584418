// Causal grouped-query attention (Llama). Heads h of q use kv-head h / (NH/NKV).
// Scale 1/sqrt(hs); any hs (odd ones use scalar tails).
// The forward saves the probabilities att (B,NH,T,T) as llm.c does (upper
// triangle zeroed); the backward reads them and needs no recompute, or, to save
// the (B,NH,T,T) memory, recomputes one head's at a time (..._recompute).
// Work is split by the host over (b,h) pairs (forward, decode) or over (b,kvh)
// groups (backward: dk, dv sum over a group's heads, so a group is one job).
import { madd } from "./common";
import { exp4, exp1 } from "./vmath";

/** [a·b0, a·b1, a·b2, a·b3] with bj = b + j·stride (bytes); rows of n floats. */
// @ts-ignore: decorator
@inline function dot4(a: usize, b: usize, stride: usize, n: i32): v128 {
  const b1 = b + stride, b2 = b1 + stride, b3 = b2 + stride;
  let s0 = f32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
  let d = 0;
  for (; d + 4 <= n; d += 4) {
    const o = <usize>d << 2;
    const av = v128.load(a + o);
    s0 = madd(av, v128.load(b + o), s0);
    s1 = madd(av, v128.load(b1 + o), s1);
    s2 = madd(av, v128.load(b2 + o), s2);
    s3 = madd(av, v128.load(b3 + o), s3);
  }
  // transpose-add: lane j of r is the sum of sj's lanes
  const t0 = f32x4.add(f32x4.shuffle(s0, s1, 0, 4, 1, 5), f32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const t1 = f32x4.add(f32x4.shuffle(s2, s3, 0, 4, 1, 5), f32x4.shuffle(s2, s3, 2, 6, 3, 7));
  let r = f32x4.add(f32x4.shuffle(t0, t1, 0, 1, 4, 5), f32x4.shuffle(t0, t1, 2, 3, 6, 7));
  if (d < n) {
    let e0: f32 = 0, e1: f32 = 0, e2: f32 = 0, e3: f32 = 0;
    for (; d < n; d++) {
      const o = <usize>d << 2;
      const av = load<f32>(a + o);
      e0 += av * load<f32>(b + o);
      e1 += av * load<f32>(b1 + o);
      e2 += av * load<f32>(b2 + o);
      e3 += av * load<f32>(b3 + o);
    }
    let e = f32x4.splat(e0);
    e = f32x4.replace_lane(e, 1, e1);
    e = f32x4.replace_lane(e, 2, e2);
    e = f32x4.replace_lane(e, 3, e3);
    r = f32x4.add(r, e);
  }
  return r;
}

/** a·b over n floats. */
// @ts-ignore: decorator
@inline function dot1(a: usize, b: usize, n: i32): f32 {
  let s = f32x4.splat(0);
  let d = 0;
  for (; d + 4 <= n; d += 4) {
    const o = <usize>d << 2;
    s = madd(v128.load(a + o), v128.load(b + o), s);
  }
  let r = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) +
    f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  for (; d < n; d++) {
    const o = <usize>d << 2;
    r += load<f32>(a + o) * load<f32>(b + o);
  }
  return r;
}

/** y[n] += c0·x0 + c1·x1 + c2·x2 + c3·x3 with xj = x + j·stride (bytes). */
// @ts-ignore: decorator
@inline function axpy4(
  y: usize, x: usize, stride: usize, c0: f32, c1: f32, c2: f32, c3: f32, n: i32,
): void {
  const x1 = x + stride, x2 = x1 + stride, x3 = x2 + stride;
  const v0 = f32x4.splat(c0), v1 = f32x4.splat(c1), v2 = f32x4.splat(c2), v3 = f32x4.splat(c3);
  let d = 0;
  for (; d + 4 <= n; d += 4) {
    const o = <usize>d << 2;
    let acc = v128.load(y + o);
    acc = madd(v128.load(x + o), v0, acc);
    acc = madd(v128.load(x1 + o), v1, acc);
    acc = madd(v128.load(x2 + o), v2, acc);
    acc = madd(v128.load(x3 + o), v3, acc);
    v128.store(y + o, acc);
  }
  for (; d < n; d++) {
    const o = <usize>d << 2;
    store<f32>(y + o, load<f32>(y + o) + c0 * load<f32>(x + o) + c1 * load<f32>(x1 + o) +
      c2 * load<f32>(x2 + o) + c3 * load<f32>(x3 + o));
  }
}

/** y[n] += c·x. */
// @ts-ignore: decorator
@inline function axpy1(y: usize, x: usize, c: f32, n: i32): void {
  const vc = f32x4.splat(c);
  let d = 0;
  for (; d + 4 <= n; d += 4) {
    const o = <usize>d << 2;
    v128.store(y + o, madd(v128.load(x + o), vc, v128.load(y + o)));
  }
  for (; d < n; d++) {
    const o = <usize>d << 2;
    store<f32>(y + o, load<f32>(y + o) + c * load<f32>(x + o));
  }
}

// @ts-ignore: decorator
@inline function zero(y: usize, n: i32): void {
  memory.fill(y, 0, <usize>n << 2);
}

/**
 * One query row over keys 0..L-1: p (L) = e^(scale·q·kⱼ − max), unnormalised; returns
 * 1/Σ. Key rows are `stride` bytes apart. Shared by the forward and the recomputing
 * backward, so both get the same bits.
 */
// @ts-ignore: decorator
@inline function expScoresRow(
  p: usize, q: usize, k: usize, stride: usize, L: i32, hs: i32, scale: f32,
): f32 {
  const vscale = f32x4.splat(scale);
  let vmax = f32x4.splat(-Infinity);
  let j = 0;
  for (; j + 4 <= L; j += 4) {
    const s = f32x4.mul(dot4(q, k + <usize>j * stride, stride, hs), vscale);
    v128.store(p + (<usize>j << 2), s);
    vmax = f32x4.max(vmax, s);
  }
  let m = max(max(f32x4.extract_lane(vmax, 0), f32x4.extract_lane(vmax, 1)),
    max(f32x4.extract_lane(vmax, 2), f32x4.extract_lane(vmax, 3)));
  for (; j < L; j++) {
    const s = dot1(q, k + <usize>j * stride, hs) * scale;
    store<f32>(p + (<usize>j << 2), s);
    m = max(m, s);
  }
  const vm = f32x4.splat(m);
  let vsum = f32x4.splat(0);
  j = 0;
  for (; j + 4 <= L; j += 4) {
    const o = <usize>j << 2;
    const e = exp4(f32x4.sub(v128.load(p + o), vm));
    v128.store(p + o, e);
    vsum = f32x4.add(vsum, e);
  }
  let sum = f32x4.extract_lane(vsum, 0) + f32x4.extract_lane(vsum, 1) +
    f32x4.extract_lane(vsum, 2) + f32x4.extract_lane(vsum, 3);
  for (; j < L; j++) {
    const o = <usize>j << 2;
    const e = exp1(load<f32>(p + o) - m);
    store<f32>(p + o, e);
    sum += e;
  }
  return 1 / sum;
}

/** p (L) = softmax(scale·q·kⱼ) over keys 0..L-1 (rows `stride` bytes apart). */
// @ts-ignore: decorator
@inline function softmaxRow(
  p: usize, q: usize, k: usize, stride: usize, L: i32, hs: i32, scale: f32,
): void {
  const inv = expScoresRow(p, q, k, stride, L, hs, scale);
  const vinv = f32x4.splat(inv);
  let j = 0;
  for (; j + 4 <= L; j += 4) {
    const o = <usize>j << 2;
    v128.store(p + o, f32x4.mul(v128.load(p + o), vinv));
  }
  for (; j < L; j++) {
    const o = <usize>j << 2;
    store<f32>(p + o, load<f32>(p + o) * inv);
  }
}

/**
 * One query row over keys 0..L-1: p (L) = softmax(scale·q·kⱼ), out (hs) = Σ pⱼ·vⱼ.
 * Key/value rows are `stride` bytes apart.
 */
function attendRow(
  out: usize, p: usize, q: usize, k: usize, v: usize, stride: usize, L: i32, hs: i32, scale: f32,
): void {
  const inv = expScoresRow(p, q, k, stride, L, hs, scale);
  const vinv = f32x4.splat(inv);
  zero(out, hs);
  let j = 0;
  for (; j + 4 <= L; j += 4) {
    const o = <usize>j << 2;
    const pv = f32x4.mul(v128.load(p + o), vinv);
    v128.store(p + o, pv);
    axpy4(out, v + <usize>j * stride, stride, f32x4.extract_lane(pv, 0),
      f32x4.extract_lane(pv, 1), f32x4.extract_lane(pv, 2), f32x4.extract_lane(pv, 3), hs);
  }
  for (; j < L; j++) {
    const o = <usize>j << 2;
    const pj = load<f32>(p + o) * inv;
    store<f32>(p + o, pj);
    axpy1(out, v + <usize>j * stride, pj, hs);
  }
}

/**
 * q is (B,T,NH,hs), k and v are (B,T,NKV,hs) with NH % NKV = 0;
 * out is (B,T,NH,hs), att is (B,NH,T,T): softmax probabilities, rows t hold
 * keys 0..t and zeros after. Runs the (b,h) pairs w ∈ [w0,w1) of B·NH.
 */
export function attention_forward(
  out: usize, att: usize, q: usize, k: usize, v: usize,
  T: i32, NH: i32, NKV: i32, hs: i32, w0: i32, w1: i32,
): void {
  const group = NH / NKV;
  const scale: f32 = 1 / Mathf.sqrt(<f32>hs);
  const hsBytes = <usize>hs << 2;
  const qStride = <usize>NH * hsBytes, kvStride = <usize>NKV * hsBytes;
  for (let w = w0; w < w1; w++) {
    const b = w / NH, h = w % NH, kvh = h / group;
    const kb = k + <usize>b * <usize>T * kvStride + <usize>kvh * hsBytes;
    const vb = v + <usize>b * <usize>T * kvStride + <usize>kvh * hsBytes;
    const qb = q + <usize>b * <usize>T * qStride + <usize>h * hsBytes;
    const ob = out + <usize>b * <usize>T * qStride + <usize>h * hsBytes;
    const ab = att + <usize>w * <usize>T * (<usize>T << 2);
    for (let t = 0; t < T; t++) {
      const row = ab + <usize>t * (<usize>T << 2);
      attendRow(ob + <usize>t * qStride, row, qb + <usize>t * qStride, kb, vb, kvStride, t + 1,
        hs, scale);
      zero(row + (<usize>(t + 1) << 2), T - t - 1);
    }
  }
}

/**
 * dout, q are (B,T,NH,hs), k, v are (B,T,NKV,hs), att (B,NH,T,T) from the forward.
 * dq (B,T,NH,hs), dk and dv (B,T,NKV,hs) are overwritten; dk, dv sum over the
 * heads of each kv group. Runs the (b,kvh) groups g ∈ [g0,g1) of B·NKV.
 * scratch is (T,T) per concurrent call: scale·∂L/∂scores of one head.
 */
export function attention_backward(
  dq: usize, dk: usize, dv: usize, scratch: usize, dout: usize, q: usize, k: usize, v: usize,
  att: usize, T: i32, NH: i32, NKV: i32, hs: i32, g0: i32, g1: i32,
): void {
  backwardGroups(dq, dk, dv, scratch, dout, q, k, v, att, false, T, NH, NKV, hs, g0, g1);
}

/**
 * attention_backward without the forward's att: each head's probabilities are
 * recomputed from q, k (the forward's arithmetic, so the same bits) into `probs`,
 * a second (T,T) scratch per concurrent call (only its lower triangle is used).
 */
export function attention_backward_recompute(
  dq: usize, dk: usize, dv: usize, scratch: usize, probs: usize, dout: usize, q: usize, k: usize,
  v: usize, T: i32, NH: i32, NKV: i32, hs: i32, g0: i32, g1: i32,
): void {
  backwardGroups(dq, dk, dv, scratch, dout, q, k, v, probs, true, T, NH, NKV, hs, g0, g1);
}

/** The backward over groups g0..g1; with `recompute`, att is one head's (T,T) scratch. */
// @ts-ignore: decorator
@inline function backwardGroups(
  dq: usize, dk: usize, dv: usize, scratch: usize, dout: usize, q: usize, k: usize, v: usize,
  att: usize, recompute: bool, T: i32, NH: i32, NKV: i32, hs: i32, g0: i32, g1: i32,
): void {
  const group = NH / NKV;
  const scale: f32 = 1 / Mathf.sqrt(<f32>hs);
  const hsBytes = <usize>hs << 2;
  const qStride = <usize>NH * hsBytes, kvStride = <usize>NKV * hsBytes;
  const rowBytes = <usize>T << 2;
  for (let g = g0; g < g1; g++) {
    const b = g / NKV, kvh = g % NKV;
    const kvOff = <usize>b * <usize>T * kvStride + <usize>kvh * hsBytes;
    const kb = k + kvOff, vb = v + kvOff, dkb = dk + kvOff, dvb = dv + kvOff;
    for (let t = 0; t < T; t++) {
      zero(dkb + <usize>t * kvStride, hs);
      zero(dvb + <usize>t * kvStride, hs);
    }
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      const qOff = <usize>b * <usize>T * qStride + <usize>h * hsBytes;
      const qb = q + qOff, dqb = dq + qOff, dob = dout + qOff;
      let ab = att;
      if (recompute) {
        for (let t = 0; t < T; t++) {
          softmaxRow(ab + <usize>t * rowBytes, qb + <usize>t * qStride, kb, kvStride, t + 1, hs,
            scale);
        }
      } else {
        ab += (<usize>b * <usize>NH + <usize>h) * <usize>T * rowBytes;
      }
      // rows: ds = scale·p·(dp − Σ p·dp) with dp = dout·v; dq_t = Σ_j ds_tj·k_j
      for (let t = 0; t < T; t++) {
        const p = ab + <usize>t * rowBytes, ds = scratch + <usize>t * rowBytes;
        const dy = dob + <usize>t * qStride;
        const L = t + 1;
        let vacc = f32x4.splat(0);
        let j = 0;
        for (; j + 4 <= L; j += 4) {
          const o = <usize>j << 2;
          const dp = dot4(dy, vb + <usize>j * kvStride, kvStride, hs);
          v128.store(ds + o, dp);
          vacc = madd(dp, v128.load(p + o), vacc);
        }
        let pdp = f32x4.extract_lane(vacc, 0) + f32x4.extract_lane(vacc, 1) +
          f32x4.extract_lane(vacc, 2) + f32x4.extract_lane(vacc, 3);
        for (; j < L; j++) {
          const o = <usize>j << 2;
          const dp = dot1(dy, vb + <usize>j * kvStride, hs);
          store<f32>(ds + o, dp);
          pdp += dp * load<f32>(p + o);
        }
        const vpdp = f32x4.splat(pdp), vscale = f32x4.splat(scale);
        const dqt = dqb + <usize>t * qStride;
        zero(dqt, hs);
        j = 0;
        for (; j + 4 <= L; j += 4) {
          const o = <usize>j << 2;
          const d = f32x4.mul(f32x4.mul(v128.load(p + o), f32x4.sub(v128.load(ds + o), vpdp)), vscale);
          v128.store(ds + o, d);
          axpy4(dqt, kb + <usize>j * kvStride, kvStride, f32x4.extract_lane(d, 0),
            f32x4.extract_lane(d, 1), f32x4.extract_lane(d, 2), f32x4.extract_lane(d, 3), hs);
        }
        for (; j < L; j++) {
          const o = <usize>j << 2;
          const d = load<f32>(p + o) * (load<f32>(ds + o) - pdp) * scale;
          store<f32>(ds + o, d);
          axpy1(dqt, kb + <usize>j * kvStride, d, hs);
        }
      }
      // columns: dk_j += Σ_{t≥j} ds_tj·q_t, dv_j += Σ_{t≥j} p_tj·dout_t
      for (let j = 0; j < T; j++) {
        const dkj = dkb + <usize>j * kvStride, dvj = dvb + <usize>j * kvStride;
        const col = <usize>j << 2;
        let t = j;
        for (; t + 4 <= T; t += 4) {
          const ds = scratch + <usize>t * rowBytes + col, p = ab + <usize>t * rowBytes + col;
          axpy4(dkj, qb + <usize>t * qStride, qStride, load<f32>(ds), load<f32>(ds + rowBytes),
            load<f32>(ds + 2 * rowBytes), load<f32>(ds + 3 * rowBytes), hs);
          axpy4(dvj, dob + <usize>t * qStride, qStride, load<f32>(p), load<f32>(p + rowBytes),
            load<f32>(p + 2 * rowBytes), load<f32>(p + 3 * rowBytes), hs);
        }
        for (; t < T; t++) {
          axpy1(dkj, qb + <usize>t * qStride, load<f32>(scratch + <usize>t * rowBytes + col), hs);
          axpy1(dvj, dob + <usize>t * qStride, load<f32>(ab + <usize>t * rowBytes + col), hs);
        }
      }
    }
  }
}

/**
 * Decode step with a KV cache: q is (B,NH,hs) for one new position per sequence,
 * kcache and vcache are (B,NKV,maxT,hs) holding positions 0..L-1 (the new
 * one included); out is (B,NH,hs); scores (B,NH,L) receives the probabilities.
 * Runs the (b,h) pairs w ∈ [w0,w1) of B·NH.
 */
export function attention_decode(
  out: usize, scores: usize, q: usize, kcache: usize, vcache: usize,
  NH: i32, NKV: i32, hs: i32, L: i32, maxT: i32, w0: i32, w1: i32,
): void {
  const group = NH / NKV;
  const scale: f32 = 1 / Mathf.sqrt(<f32>hs);
  const hsBytes = <usize>hs << 2;
  const headBytes = <usize>maxT * hsBytes;
  for (let w = w0; w < w1; w++) {
    const b = w / NH, h = w % NH, kvh = h / group;
    const off = (<usize>b * <usize>NKV + <usize>kvh) * headBytes;
    attendRow(out + <usize>w * hsBytes, scores + <usize>w * (<usize>L << 2),
      q + <usize>w * hsBytes, kcache + off, vcache + off, hsBytes, L, hs, scale);
  }
}
