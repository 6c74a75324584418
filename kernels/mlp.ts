/** SwiGLU host wrappers: h = silu(g) ⊙ u over (B,T,H), flattened. */
import type { F32, Kernels } from "./core.ts";
import { expectDims, expectLength, splitRange, threadsFor } from "./dims.ts";

/** Elementwise work below this per thread stays on one thread. */
const MIN_THREAD_ELEMENTS = 1 << 15;

/** Ranges of [0,n) for the threads worth using, cut at multiples of 4 (whole vectors). */
function elementRanges(k: Kernels, n: number): [number, number][] {
  const threads = threadsFor(k, n, 1, MIN_THREAD_ELEMENTS);
  if (threads === 1) return [[0, n]];
  return splitRange(n, threads).map(([a, b]) => [a - (a % 4), b === n ? n : b - (b % 4)]);
}

/** h (B,T,H) = silu(g)·u with g, u (B,T,H); h may be g or u itself. */
export function swigluForward(k: Kernels, h: F32, g: F32, u: F32): void {
  const name = "swigluForward";
  const n = g.length;
  expectDims(name, { n });
  expectLength(k, name, "g", g, n, "g's length");
  expectLength(k, name, "u", u, n, "g's length");
  expectLength(k, name, "h", h, n, "g's length");
  k.parallel(
    "swiglu_forward",
    elementRanges(k, n).map(([a, b]) => [h.ptr + a * 4, g.ptr + a * 4, u.ptr + a * 4, b - a]),
  );
}

/** dg, du (B,T,H) are overwritten from dh (B,T,H); either may be dh itself. */
export function swigluBackward(k: Kernels, dg: F32, du: F32, dh: F32, g: F32, u: F32): void {
  const name = "swigluBackward";
  const n = g.length;
  expectDims(name, { n });
  for (const [label, a] of [["u", u], ["dh", dh], ["dg", dg], ["du", du]] as const) {
    expectLength(k, name, label, a, n, "g's length");
  }
  k.parallel(
    "swiglu_backward",
    elementRanges(k, n).map((
      [a, b],
    ) => [dg.ptr + a * 4, du.ptr + a * 4, dh.ptr + a * 4, g.ptr + a * 4, u.ptr + a * 4, b - a]),
  );
}
