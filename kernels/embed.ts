/**
 * Token embedding host wrappers: out (B,T,C) = table (V,C) [ids (B,T)], and the
 * backward scatter-add into dtable (embeddings are frozen in LoRA training; it
 * exists for completeness).
 */
import type { F32, Kernels, WasmArray } from "./core.ts";
import { expectArray, expectDims, expectLength, quotient } from "./dims.ts";

function checkIds(kernel: string, ids: Int32Array, V: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= V) {
      throw new RangeError(`${kernel}: ids[${i}] = ${id} is outside the vocabulary [0, ${V})`);
    }
  }
}

/** out (N,C) = table (V,C) rows at ids (N); C = table row size, N = ids.length. */
export function embeddingForward(
  k: Kernels,
  out: F32,
  table: F32,
  ids: WasmArray<"i32">,
  C: number,
): void {
  const name = "embeddingForward";
  expectDims(name, { C, N: ids.length });
  expectArray(k, name, "ids", ids, "i32");
  const V = quotient(name, "table", table.length, C);
  expectArray(k, name, "table", table);
  expectLength(k, name, "out", out, ids.length * C, "N·C");
  checkIds(name, ids.data, V);
  k.exports.embedding_forward(out.ptr, ids.ptr, table.ptr, ids.length, C, V);
}

/** dtable (V,C) += dout (N,C) rows at ids (N); repeated ids add up. */
export function embeddingBackward(
  k: Kernels,
  dtable: F32,
  dout: F32,
  ids: WasmArray<"i32">,
  C: number,
): void {
  const name = "embeddingBackward";
  expectDims(name, { C, N: ids.length });
  expectArray(k, name, "ids", ids, "i32");
  const V = quotient(name, "dtable", dtable.length, C);
  expectArray(k, name, "dtable", dtable);
  expectLength(k, name, "dout", dout, ids.length * C, "N·C");
  checkIds(name, ids.data, V);
  k.exports.embedding_backward(dtable.ptr, dout.ptr, ids.ptr, ids.length, C, V);
}
