import { Kernels } from "./core.ts";
import { gemmDyTX, gemmDyW, gemmFlops, type GemmOptions, gemmXWt, splitOutput } from "./gemm.ts";
import { gemmDyTXRef, gemmDyWRef, gemmXWtRef } from "./reference/gemm.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertThrows,
  randn,
  testKernels,
} from "../tests/util.ts";

type Layout = "xwt" | "dyw" | "dytx";

/**
 * Shapes (M, K, N) covering tiny and odd sizes, every kernel path (short
 * reduction ≤ 32, narrow output ≤ 64 columns, the unpacked weight-gradient
 * path with one short side, packed) and the cache blocks (rows past 96,
 * reduction past 256 and 1024, columns past 64 and 1536).
 */
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 7, 3],
  [3, 1, 5],
  [2, 5, 1],
  [17, 33, 9],
  [64, 64, 64],
  [100, 3, 129],
  [31, 16, 40],
  [37, 32, 33],
  [9, 33, 70],
  [50, 300, 16],
  [7, 1030, 5],
  [13, 1100, 70],
  [100, 40, 50],
  [4, 40, 1600],
  [130, 97, 98],
  [40, 45, 7],
  [37, 66, 13],
  [9, 1100, 12],
];

/** Output shape (rows, cols) and reduction length of a layout. */
function dims(layout: Layout, M: number, K: number, N: number): [number, number, number] {
  if (layout === "xwt") return [M, N, K];
  if (layout === "dyw") return [M, K, N];
  return [N, K, M];
}

/** Runs one layout on random inputs and compares with the f64 reference. */
function check(k: Kernels, layout: Layout, M: number, K: number, N: number, acc: boolean): void {
  const seed = M * 1_000_003 + K * 1009 + N * 7 + (acc ? 1 : 0);
  const [rows, cols, inner] = dims(layout, M, K, N);
  const aLen = layout === "xwt" ? M * K : M * N;
  const bLen = layout === "dytx" ? M * K : N * K;
  const a = randn(aLen, seed), b = randn(bLen, seed + 1), c0 = randn(rows * cols, seed + 2);
  const A = k.from(a), B = k.from(b), C = k.from(c0);
  try {
    const opts: GemmOptions = { accumulate: acc };
    let ref: Float64Array;
    if (layout === "xwt") {
      gemmXWt(k, C, A, B, M, K, N, opts);
      ref = gemmXWtRef(a, b, M, K, N);
    } else if (layout === "dyw") {
      gemmDyW(k, C, A, B, M, N, K, opts);
      ref = gemmDyWRef(a, b, M, N, K);
    } else {
      gemmDyTX(k, C, A, B, M, N, K, opts);
      ref = gemmDyTXRef(a, b, M, N, K);
    }
    if (acc) { for (let i = 0; i < ref.length; i++) ref[i] += c0[i]; }
    assertClose(C.data, ref, {
      atol: 1e-5 + 2e-6 * inner,
      rtol: 1e-5,
      msg: `${layout} M=${M} K=${K} N=${N} accumulate=${acc} (${rows}×${cols}, inner ${inner}):`,
    });
  } finally {
    A.free();
    B.free();
    C.free();
  }
}

function checkAll(k: Kernels, shapes: [number, number, number][]): void {
  for (const [M, K, N] of shapes) {
    for (const layout of ["xwt", "dyw", "dytx"] as const) {
      for (const acc of [false, true]) check(k, layout, M, K, N, acc);
    }
  }
}

Deno.test("gemm: three layouts × accumulate match the reference on odd and block-crossing shapes", async () => {
  checkAll(await testKernels(), SHAPES);
});

Deno.test("gemm: plain SIMD build (no relaxed FMA) matches the reference", async () => {
  const k = await testKernels({ noRelaxed: true });
  assertEquals(k.relaxedSimd, false);
  checkAll(k, SHAPES.filter(([M, K, N]) => M * K * N < 200_000));
});

Deno.test("gemm: two threads split the output and match the reference", async () => {
  const k = await testKernels({ threads: 2 });
  try {
    assertEquals(k.threads, 2);
    // Split by rows, by columns (short and wide), and a narrow output split by rows.
    assertEquals(splitOutput(k, 600, 100, 100).length, 2);
    assertEquals(splitOutput(k, 12, 2000, 200)[1][2] % 24, 0);
    assertEquals(splitOutput(k, 3000, 16, 600)[0][3], 16);
    assertEquals(splitOutput(k, 5, 5, 5).length, 1);
    const split: number[] = [];
    const parallel = k.parallel.bind(k);
    k.parallel = (name, args) => {
      split.push(args.length);
      parallel(name, args);
    };
    checkAll(k, [[600, 100, 100], [12, 200, 2000], [3000, 40, 16], [301, 17, 290], [257, 64, 31]]);
    assert(split.filter((n) => n === 2).length >= 10, `calls split over threads: ${split}`);
  } finally {
    k.close();
  }
});

Deno.test("gemm: one and two threads give bit-identical results", async () => {
  const k1 = await testKernels();
  const k2 = await Kernels.load({ threads: 2 });
  try {
    // Row splits, column splits, and splits that cut a side below 64.
    for (const [M, K, N] of [[100, 300, 90], [300, 100, 70], [40, 500, 130], [600, 48, 20]]) {
      for (const layout of ["xwt", "dyw", "dytx"] as const) {
        const [rows, cols] = dims(layout, M, K, N);
        const aLen = layout === "xwt" ? M * K : M * N;
        const bLen = layout === "dytx" ? M * K : N * K;
        const a = randn(aLen, M + K), b = randn(bLen, N + K);
        const out = [k1, k2].map((k) => {
          const A = k.from(a), B = k.from(b), C = k.alloc(rows * cols);
          if (layout === "xwt") gemmXWt(k, C, A, B, M, K, N);
          else if (layout === "dyw") gemmDyW(k, C, A, B, M, N, K);
          else gemmDyTX(k, C, A, B, M, N, K);
          const bits = new Uint32Array(C.toArray().buffer);
          for (const t of [A, B, C]) t.free();
          return bits;
        });
        const diff = out[0].findIndex((v, i) => v !== out[1][i]);
        assertEquals(diff, -1, `${layout} M=${M} K=${K} N=${N}: first differing element`);
      }
    }
  } finally {
    k2.close();
  }
});

Deno.test("gemm: repeated calls reuse scratch and leave other memory alone", async () => {
  const k = await testKernels();
  check(k, "xwt", 130, 97, 98, false);
  const live = k.liveBytes;
  const guard = k.from(new Float32Array(64).fill(7));
  check(k, "dytx", 130, 97, 98, true);
  check(k, "dyw", 64, 64, 64, false);
  assertEquals(
    k.liveBytes,
    live + guard.byteLength,
    "no scratch growth for equal or smaller sizes",
  );
  assertClose(guard.data, new Float32Array(64).fill(7));
  guard.free();
});

Deno.test("gemm: wrong sizes and aliasing are refused with actionable messages", async () => {
  const k = await testKernels();
  const X = k.alloc(15), W = k.alloc(12), Y = k.alloc(20);
  assertThrows(() => gemmXWt(k, Y, X, W, 5, 4, 4), /X has 15 elements, expected M·K = 20/);
  assertThrows(() => gemmXWt(k, Y, X, W, 5, 3, 0), /N must be a positive integer, got 0/);
  assertThrows(() => gemmDyW(k, Y, X, W, 5, 3, 5), /dX has 20 elements, expected M·K = 25/);
  const W9 = k.alloc(9);
  assertThrows(() => gemmXWt(k, X, X, W9, 5, 3, 3), /output Y overlaps input X/);
  W9.free();
  const I = k.alloc(6, "i32");
  assertThrows(
    () => gemmDyTX(k, W, X, I as unknown as typeof X, 5, 3, 4),
    /X is i32, expected f32/,
  );
  for (const a of [X, W, Y, I]) a.free();
});

Deno.test("gemm: flop count", () => {
  assertEquals(gemmFlops(2, 3, 4), 48);
  assert(gemmFlops(1024, 1024, 1024) === 2 ** 31);
});
