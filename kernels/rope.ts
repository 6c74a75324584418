/**
 * Rotary position embedding host wrappers. The cos/sin table is built here in
 * f64 and rounded once to f32, so positions in the thousands stay exact to f32
 * rounding (an f32 angle p·θ^(-2i/hs) would lose ~p·2^-24 radians).
 */
import type { F32, Kernels } from "./core.ts";
import { expectArray, expectDims, expectLength } from "./dims.ts";

/** "interleaved": pairs (2i, 2i+1) as llama2.c; "rotate-half": pairs (i, i+hs/2) as HF. */
export type RopeStyle = "interleaved" | "rotate-half";

export interface RopeShape {
  B: number;
  T: number;
  /** Heads in x: n_heads for q, n_kv_heads for k. */
  NH: number;
  hs: number;
  /** Position of the first of the T tokens (default 0). */
  pos0?: number;
  style?: RopeStyle;
}

/**
 * Table (P,hs) for positions 0..P-1: per position hs/2 cosines then hs/2 sines
 * of p·θ^(-2i/hs), i < hs/2. θ = 10000 for Llama 2 and llama2.c.
 */
export function ropeTable(k: Kernels, P: number, hs: number, theta = 10000): F32 {
  expectDims("ropeTable", { P, hs });
  if (hs % 2 !== 0) throw new RangeError(`ropeTable: head size ${hs} is odd; RoPE needs pairs`);
  const half = hs / 2;
  const table = k.alloc([P, hs]);
  const d = table.data;
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.pow(theta, (-2 * i) / hs);
      d[p * hs + i] = Math.cos(angle);
      d[p * hs + half + i] = Math.sin(angle);
    }
  }
  return table;
}

function rope(
  k: Kernels,
  kernel: "rope_forward" | "rope_backward",
  x: F32,
  table: F32,
  { B, T, NH, hs, pos0 = 0, style = "interleaved" }: RopeShape,
): void {
  expectDims(kernel, { B, T, NH, hs });
  if (hs % 2 !== 0) throw new RangeError(`${kernel}: head size ${hs} is odd; RoPE needs pairs`);
  if (!Number.isInteger(pos0) || pos0 < 0) {
    throw new RangeError(`${kernel}: pos0 must be a non-negative integer, got ${pos0}`);
  }
  if (style !== "interleaved" && style !== "rotate-half") {
    throw new RangeError(`${kernel}: style must be "interleaved" or "rotate-half", got ${style}`);
  }
  expectLength(k, kernel, "x", x, B * T * NH * hs, "B·T·NH·hs");
  expectArray(k, kernel, "table", table);
  if (table.length % hs !== 0 || table.length / hs < pos0 + T) {
    throw new RangeError(
      `${kernel}: table has ${table.length} elements, expected (P,hs) with P ≥ pos0+T = ${
        pos0 + T
      } positions of hs = ${hs}; build it with ropeTable(k, ${pos0 + T}, ${hs})`,
    );
  }
  k.exports[kernel](x.ptr, table.ptr, B, T, NH, hs, pos0, style === "rotate-half" ? 1 : 0);
}

/** Rotates x (B,T,NH,hs) in place at positions pos0..pos0+T-1. */
export function ropeForward(k: Kernels, x: F32, table: F32, shape: RopeShape): void {
  rope(k, "rope_forward", x, table, shape);
}

/** Turns the gradient dx (B,T,NH,hs) back in place (the inverse rotation). */
export function ropeBackward(k: Kernels, dx: F32, table: F32, shape: RopeShape): void {
  rope(k, "rope_backward", dx, table, shape);
}
