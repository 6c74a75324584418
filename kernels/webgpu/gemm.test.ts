import { Gpu, probeAdapter } from "./device.ts";
import { gemmDyTX, gemmDyW, type GemmOptions, gemmXWt } from "./gemm.ts";
import { gemmDyTXRef, gemmDyWRef, gemmXWtRef } from "../reference/gemm.ts";
import { assertClose, assertThrows, randn } from "../../tests/util.ts";

// Runs on whatever adapter exists (here: Mesa llvmpipe, a software fallback);
// ignored only where the host has no WebGPU adapter at all.
const probe = await probeAdapter();
const ignore = !probe.ok;

async function withGpu(fn: (gpu: Gpu) => Promise<void>): Promise<void> {
  const gpu = await Gpu.open();
  try {
    await fn(gpu);
  } finally {
    gpu.destroy();
  }
}

type Layout = "xwt" | "dyw" | "dytx";

/** The reference for one layout, plus `c0` when accumulating. */
function reference(
  layout: Layout,
  a: Float32Array,
  b: Float32Array,
  M: number,
  K: number,
  N: number,
  c0?: Float32Array,
): Float64Array {
  const out = layout === "xwt"
    ? gemmXWtRef(a, b, M, K, N)
    : layout === "dyw"
    ? gemmDyWRef(a, b, M, N, K)
    : gemmDyTXRef(a, b, M, N, K);
  if (c0) out.forEach((v, i) => (out[i] = v + c0[i]));
  return out;
}

/** Runs one layout on the GPU and returns (result, reference). */
async function runLayout(
  gpu: Gpu,
  layout: Layout,
  M: number,
  K: number,
  N: number,
  opts: GemmOptions,
  seed: number,
): Promise<[Float32Array, Float64Array]> {
  const [aLen, bLen, cLen] = layout === "xwt"
    ? [M * K, N * K, M * N]
    : layout === "dyw"
    ? [M * N, N * K, M * K]
    : [M * N, M * K, N * K];
  const a = randn(aLen, seed), b = randn(bLen, seed + 1), c0 = randn(cLen, seed + 2);
  const A = gpu.tensor(aLen, a), B = gpu.tensor(bLen, b), C = gpu.tensor(cLen, c0);
  if (layout === "xwt") gemmXWt(gpu, C, A, B, M, K, N, opts);
  else if (layout === "dyw") gemmDyW(gpu, C, A, B, M, N, K, opts);
  else gemmDyTX(gpu, C, A, B, M, N, K, opts);
  const got = await C.read();
  for (const t of [A, B, C]) t.free();
  return [got, reference(layout, a, b, M, K, N, opts.accumulate ? c0 : undefined)];
}

// (M,K,N): tiny, odd, one exact 64-tile, and ragged multi-tile shapes; they
// reach the 16×16, 16×64, 64×16 and 64×64 tile variants.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 33, 9],
  [64, 64, 64],
  [130, 70, 65],
];

for (const layout of ["xwt", "dyw", "dytx"] as const) {
  Deno.test({
    name: `WGSL gemm ${layout} matches the reference on odd shapes, with and without accumulate`,
    ignore,
    fn: () =>
      withGpu(async (gpu) => {
        let seed = 1;
        for (const [M, K, N] of SHAPES) {
          for (const accumulate of [false, true]) {
            const [got, want] = await runLayout(gpu, layout, M, K, N, { accumulate }, seed += 3);
            assertClose(got, want, { atol: 1e-4, rtol: 1e-4, msg: `${layout} ${M}×${K}×${N}` });
          }
        }
      }),
  });
}

Deno.test({
  name: "WGSL gemm: split-K pieces sum to the unsplit product (forced and automatic)",
  ignore,
  fn: () =>
    withGpu(async (gpu) => {
      let seed = 100;
      for (const layout of ["xwt", "dyw", "dytx"] as const) {
        for (const accumulate of [false, true]) {
          // A ragged inner length (70) over 3 pieces leaves a short last piece.
          const [got, want] = await runLayout(gpu, layout, 70, 70, 70, {
            accumulate,
            splitK: 3,
          }, seed += 3);
          assertClose(got, want, { atol: 1e-4, rtol: 1e-4, msg: `${layout} split 3` });
        }
      }
      // One output tile over a long inner loop splits on its own (LoRA's dA shape).
      const [got, want] = await runLayout(gpu, "dytx", 1100, 5, 6, { accumulate: true }, 7);
      assertClose(got, want, { atol: 2e-4, rtol: 1e-4, msg: "auto split" });
    }),
});

Deno.test({
  name: "WGSL gemm: wrong sizes, aliased outputs and foreign tensors give actionable errors",
  ignore,
  fn: () =>
    withGpu(async (gpu) => {
      const X = gpu.tensor([3, 5]), W = gpu.tensor([7, 5]), Y = gpu.tensor([3, 7]);
      assertThrows(() => gemmXWt(gpu, Y, X, W, 3, 4, 7), /X has 15 elements, expected M·K = 12/);
      assertThrows(() => gemmDyW(gpu, X, Y, W, 3, 7, 4), /dX has 15 elements/);
      assertThrows(
        () => gemmDyTX(gpu, W, Y, X, 3, 7, 2.5),
        /K must be a positive integer, got 2.5/,
      );
      assertThrows(() => gemmXWt(gpu, gpu.tensor(0), X, W, 0, 5, 7), /M must be a positive/);
      const S = gpu.tensor([3, 3]);
      assertThrows(() => gemmXWt(gpu, S, S, S, 3, 3, 3), /X and Y are the same tensor/);
      const other = await Gpu.open();
      try {
        const Z = other.tensor([3, 7]);
        assertThrows(() => gemmXWt(gpu, Z, X, W, 3, 5, 7), /Y lives on another GPU context/);
      } finally {
        other.destroy();
      }
      X.free();
      assertThrows(() => gemmXWt(gpu, Y, X, W, 3, 5, 7), /X was freed/);
      await gpu.flush();
    }),
});
