/**
 * Causal grouped-query attention host wrappers. q is (B,T,NH,hs), k and v are
 * (B,T,NKV,hs) with NKV dividing NH; query head h reads kv head h/(NH/NKV).
 * The forward saves att (B,NH,T,T), the softmax probabilities (as llm.c), so
 * the backward does no recompute (or, given att = null, recomputes one head at
 * a time to save that memory); the decode step reads a KV cache laid out
 * (B,NKV,maxT,hs) per layer.
 */
import type { F32, Kernels } from "./core.ts";
import { expectDims, expectLength, splitRange, threadsFor } from "./dims.ts";

export interface AttentionShape {
  B: number;
  T: number;
  NH: number;
  NKV: number;
  hs: number;
}

/** Work below this many multiply-adds per thread stays on one thread. */
const MIN_THREAD_WORK = 1 << 16;

function checkShape(kernel: string, { B, T, NH, NKV, hs }: AttentionShape): void {
  expectDims(kernel, { B, T, NH, NKV, hs });
  if (NH % NKV !== 0) {
    throw new RangeError(`${kernel}: n_kv_heads ${NKV} does not divide n_heads ${NH}`);
  }
}

/**
 * out (B,T,NH,hs) = causal softmax(q·kᵀ/sqrt(hs))·v; att (B,NH,T,T) receives the
 * probabilities (zeros above the diagonal) for the backward.
 */
export function attentionForward(
  k: Kernels,
  out: F32,
  att: F32,
  q: F32,
  key: F32,
  value: F32,
  shape: AttentionShape,
): void {
  const name = "attentionForward";
  checkShape(name, shape);
  const { B, T, NH, NKV, hs } = shape;
  expectLength(k, name, "q", q, B * T * NH * hs, "B·T·NH·hs");
  expectLength(k, name, "out", out, B * T * NH * hs, "B·T·NH·hs");
  expectLength(k, name, "k", key, B * T * NKV * hs, "B·T·NKV·hs");
  expectLength(k, name, "v", value, B * T * NKV * hs, "B·T·NKV·hs");
  expectLength(k, name, "att", att, B * NH * T * T, "B·NH·T·T");
  const threads = threadsFor(k, B * NH, T * T * hs, MIN_THREAD_WORK);
  k.parallel(
    "attention_forward",
    splitRange(B * NH, threads).map((
      [w0, w1],
    ) => [out.ptr, att.ptr, q.ptr, key.ptr, value.ptr, T, NH, NKV, hs, w0, w1]),
  );
}

/**
 * dq (B,T,NH,hs), dk and dv (B,T,NKV,hs) are overwritten with the gradients
 * given dout (B,T,NH,hs); dk, dv sum over the query heads sharing a kv head.
 * att is the forward's (B,NH,T,T), or null to recompute each head's
 * probabilities from q, k instead (bitwise the same gradients; the forward's
 * att need not be kept). Uses T·T floats of scratch per thread, 2·T·T with null.
 */
export function attentionBackward(
  k: Kernels,
  dq: F32,
  dk: F32,
  dv: F32,
  dout: F32,
  q: F32,
  key: F32,
  value: F32,
  att: F32 | null,
  shape: AttentionShape,
): void {
  const name = "attentionBackward";
  checkShape(name, shape);
  const { B, T, NH, NKV, hs } = shape;
  for (const [n, a] of [["dq", dq], ["dout", dout], ["q", q]] as const) {
    expectLength(k, name, n, a, B * T * NH * hs, "B·T·NH·hs");
  }
  for (const [n, a] of [["dk", dk], ["dv", dv], ["k", key], ["v", value]] as const) {
    expectLength(k, name, n, a, B * T * NKV * hs, "B·T·NKV·hs");
  }
  if (att !== null) expectLength(k, name, "att", att, B * NH * T * T, "B·NH·T·T");
  const threads = threadsFor(k, B * NKV, (NH / NKV) * T * T * hs * 2, MIN_THREAD_WORK);
  const ranges = splitRange(B * NKV, threads);
  const scratch = k.alloc([ranges.length, att === null ? 2 : 1, T, T]);
  try {
    if (att === null) {
      const per = 2 * T * T * 4;
      k.parallel(
        "attention_backward_recompute",
        ranges.map(([g0, g1], i) => [
          dq.ptr,
          dk.ptr,
          dv.ptr,
          scratch.ptr + i * per,
          scratch.ptr + i * per + per / 2,
          dout.ptr,
          q.ptr,
          key.ptr,
          value.ptr,
          T,
          NH,
          NKV,
          hs,
          g0,
          g1,
        ]),
      );
      return;
    }
    k.parallel(
      "attention_backward",
      ranges.map(([g0, g1], i) => [
        dq.ptr,
        dk.ptr,
        dv.ptr,
        scratch.ptr + i * T * T * 4,
        dout.ptr,
        q.ptr,
        key.ptr,
        value.ptr,
        att.ptr,
        T,
        NH,
        NKV,
        hs,
        g0,
        g1,
      ]),
    );
  } finally {
    scratch.free();
  }
}

export interface DecodeShape {
  B: number;
  NH: number;
  NKV: number;
  hs: number;
  /** Cached positions to attend over, the new one included (1 ≤ L ≤ maxT). */
  L: number;
  /** Positions the cache holds per (b, kv head). */
  maxT: number;
}

/**
 * One generation step: q (B,NH,hs) for the newest position attends over
 * positions 0..L-1 of kcache, vcache (B,NKV,maxT,hs); out is (B,NH,hs).
 * Store the new position's k, v first (kvCacheWrite). `scores` (≥ B·NH·L
 * floats) is scratch for the probabilities; pass one to avoid an allocation.
 */
export function attentionDecode(
  k: Kernels,
  out: F32,
  q: F32,
  kcache: F32,
  vcache: F32,
  shape: DecodeShape,
  scores?: F32,
): void {
  const name = "attentionDecode";
  const { B, NH, NKV, hs, L, maxT } = shape;
  checkShape(name, { B, T: 1, NH, NKV, hs });
  expectDims(name, { L, maxT });
  if (L > maxT) throw new RangeError(`${name}: L = ${L} is beyond the cache's maxT = ${maxT}`);
  expectLength(k, name, "q", q, B * NH * hs, "B·NH·hs");
  expectLength(k, name, "out", out, B * NH * hs, "B·NH·hs");
  expectLength(k, name, "kcache", kcache, B * NKV * maxT * hs, "B·NKV·maxT·hs");
  expectLength(k, name, "vcache", vcache, B * NKV * maxT * hs, "B·NKV·maxT·hs");
  if (scores !== undefined && (scores.kernels !== k || scores.length < B * NH * L)) {
    throw new RangeError(
      `${name}: scores must hold at least B·NH·L = ${B * NH * L} floats of this Kernels instance`,
    );
  }
  const p = scores ?? k.alloc([B, NH, L]);
  try {
    const threads = threadsFor(k, B * NH, L * hs * 2, MIN_THREAD_WORK);
    k.parallel(
      "attention_decode",
      splitRange(B * NH, threads).map((
        [w0, w1],
      ) => [out.ptr, p.ptr, q.ptr, kcache.ptr, vcache.ptr, NH, NKV, hs, L, maxT, w0, w1]),
    );
  } finally {
    if (scores === undefined) p.free();
  }
}

export interface CacheWriteShape {
  B: number;
  /** Positions in x. */
  T: number;
  NKV: number;
  hs: number;
  maxT: number;
  /** Cache position of x's first position. */
  pos0: number;
}

/** Copies x (B,T,NKV,hs) (k or v after RoPE) into cache (B,NKV,maxT,hs) at pos0..pos0+T-1. */
export function kvCacheWrite(k: Kernels, cache: F32, x: F32, shape: CacheWriteShape): void {
  const name = "kvCacheWrite";
  const { B, T, NKV, hs, maxT, pos0 } = shape;
  expectDims(name, { B, T, NKV, hs, maxT });
  if (!Number.isInteger(pos0) || pos0 < 0 || pos0 + T > maxT) {
    throw new RangeError(`${name}: positions ${pos0}..${pos0 + T - 1} do not fit maxT = ${maxT}`);
  }
  expectLength(k, name, "x", x, B * T * NKV * hs, "B·T·NKV·hs");
  expectLength(k, name, "cache", cache, B * NKV * maxT * hs, "B·NKV·maxT·hs");
  const src = x.data, dst = cache.data;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NKV; h++) {
        const from = ((b * T + t) * NKV + h) * hs;
        dst.set(src.subarray(from, from + hs), ((b * NKV + h) * maxT + pos0 + t) * hs);
      }
    }
  }
}
