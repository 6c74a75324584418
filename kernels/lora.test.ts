import type { Kernels } from "./core.ts";
import { loraBackward, loraBackwardFlops, loraForward, loraForwardFlops } from "./lora.ts";
import { loraBackwardRef, loraForwardRef } from "./reference/lora.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertThrows,
  numericGrad,
  randn,
  testKernels,
} from "../tests/util.ts";

type Shape = [M: number, IN: number, R: number, OUT: number];

/**
 * Tiny and odd shapes, typical ranks (4, 8, 16), ranks past the short-reduction
 * path (33, 64), rows past a block (blocks are ~512 KiB of the widest row).
 */
const SHAPES: Shape[] = [
  [1, 1, 1, 1],
  [3, 7, 2, 5],
  [17, 33, 4, 9],
  [64, 96, 8, 40],
  [31, 100, 16, 70],
  [13, 20, 33, 7],
  [37, 40, 64, 33],
  [5, 9, 3, 1],
  [300, 700, 16, 576],
];

const SCALE = 0.75;

/** Tolerance for f32 sums of `n` products of values in [-1, 1). */
function tol(n: number) {
  return { atol: 1e-5 + 3e-6 * n, rtol: 1e-5 };
}

function checkForward(k: Kernels, [M, IN, R, OUT]: Shape, accumulate: boolean): void {
  const seed = M * 7919 + IN * 31 + R * 7 + OUT + (accumulate ? 1 : 0);
  const x = randn(M * IN, seed), a = randn(R * IN, seed + 1), b = randn(OUT * R, seed + 2);
  const y0 = randn(M * OUT, seed + 3);
  const X = k.from(x), A = k.from(a), B = k.from(b), dY = k.from(y0), XA = k.alloc(M * R);
  try {
    loraForward(k, dY, XA, X, A, B, M, IN, R, OUT, SCALE, { accumulate });
    const ref = loraForwardRef(x, a, b, M, IN, R, OUT, SCALE);
    if (accumulate) { for (let i = 0; i < ref.dY.length; i++) ref.dY[i] += y0[i]; }
    const msg = `forward M=${M} IN=${IN} R=${R} OUT=${OUT} accumulate=${accumulate}:`;
    assertClose(XA.data, ref.XA, { ...tol(IN), msg: `${msg} XA` });
    assertClose(dY.data, ref.dY, { ...tol(IN * R), msg: `${msg} ΔY` });
  } finally {
    for (const t of [X, A, B, dY, XA]) t.free();
  }
}

function checkBackward(
  k: Kernels,
  [M, IN, R, OUT]: Shape,
  accumulateGrads: boolean,
  accumulateDx: boolean,
): void {
  const seed = M * 104729 + IN * 131 + R * 17 + OUT;
  const x = randn(M * IN, seed), a = randn(R * IN, seed + 1), b = randn(OUT * R, seed + 2);
  const g = randn(M * OUT, seed + 3);
  const dx0 = randn(M * IN, seed + 4),
    da0 = randn(R * IN, seed + 5),
    db0 = randn(OUT * R, seed + 6);
  const xa = loraForwardRef(x, a, b, M, IN, R, OUT, SCALE).XA;
  const X = k.from(x), A = k.from(a), B = k.from(b), G = k.from(g), XA = k.from(xa);
  const dX = k.from(dx0), dA = k.from(da0), dB = k.from(db0);
  try {
    loraBackward(k, { dX, dA, dB }, G, X, XA, A, B, M, IN, R, OUT, SCALE, {
      accumulateGrads,
      accumulateDx,
    });
    const ref = loraBackwardRef(g, x, a, b, M, IN, R, OUT, SCALE);
    if (accumulateGrads) {
      for (let i = 0; i < ref.dA.length; i++) ref.dA[i] += da0[i];
      for (let i = 0; i < ref.dB.length; i++) ref.dB[i] += db0[i];
    }
    if (accumulateDx) { for (let i = 0; i < ref.dX.length; i++) ref.dX[i] += dx0[i]; }
    const msg =
      `backward M=${M} IN=${IN} R=${R} OUT=${OUT} grads+=${accumulateGrads} dX+=${accumulateDx}:`;
    assertClose(dB.data, ref.dB, { ...tol(M * IN), msg: `${msg} dB` });
    assertClose(dA.data, ref.dA, { ...tol(M * OUT), msg: `${msg} dA` });
    assertClose(dX.data, ref.dX, { ...tol(OUT * R), msg: `${msg} dX` });
  } finally {
    for (const t of [X, A, B, G, XA, dX, dA, dB]) t.free();
  }
}

/** dX null: no input gradient (nothing upstream is trained); dA, dB as with one. */
function checkBackwardNoDx(k: Kernels, [M, IN, R, OUT]: Shape, accumulateGrads: boolean): void {
  const seed = M * 7 + IN * 5 + R * 3 + OUT;
  const x = randn(M * IN, seed), a = randn(R * IN, seed + 1), b = randn(OUT * R, seed + 2);
  const g = randn(M * OUT, seed + 3), da0 = randn(R * IN, seed + 5), db0 = randn(OUT * R, seed + 6);
  const xa = loraForwardRef(x, a, b, M, IN, R, OUT, SCALE).XA;
  const X = k.from(x), A = k.from(a), B = k.from(b), G = k.from(g), XA = k.from(xa);
  const dA = k.from(da0), dB = k.from(db0);
  try {
    loraBackward(k, { dX: null, dA, dB }, G, X, XA, A, B, M, IN, R, OUT, SCALE, {
      accumulateGrads,
      accumulateDx: true,
    });
    const ref = loraBackwardRef(g, x, a, b, M, IN, R, OUT, SCALE);
    if (accumulateGrads) {
      for (let i = 0; i < ref.dA.length; i++) ref.dA[i] += da0[i];
      for (let i = 0; i < ref.dB.length; i++) ref.dB[i] += db0[i];
    }
    const msg = `backward without dX M=${M} IN=${IN} R=${R} OUT=${OUT} grads+=${accumulateGrads}:`;
    assertClose(dB.data, ref.dB, { ...tol(M * IN), msg: `${msg} dB` });
    assertClose(dA.data, ref.dA, { ...tol(M * OUT), msg: `${msg} dA` });
  } finally {
    for (const t of [X, A, B, G, XA, dA, dB]) t.free();
  }
}

function checkAll(k: Kernels, shapes: Shape[]): void {
  for (const s of shapes) {
    checkForward(k, s, false);
    checkForward(k, s, true);
    checkBackward(k, s, false, false);
    checkBackward(k, s, true, false);
    checkBackward(k, s, false, true);
    checkBackwardNoDx(k, s, false);
    checkBackwardNoDx(k, s, true);
  }
}

Deno.test("lora: forward and backward match the reference, with every accumulate flag", async () => {
  checkAll(await testKernels(), SHAPES);
});

Deno.test("lora: plain SIMD build matches the reference", async () => {
  checkAll(await testKernels({ noRelaxed: true }), SHAPES.slice(0, 7));
});

Deno.test("lora: two threads split the rows and add up dA, dB", async () => {
  const k = await testKernels({ threads: 2 });
  try {
    assertEquals(k.threads, 2);
    const split: number[] = [];
    const parallel = k.parallel.bind(k);
    k.parallel = (name, args) => {
      split.push(args.length);
      parallel(name, args);
    };
    checkAll(k, [[600, 300, 8, 200], [301, 257, 16, 129], [250, 100, 40, 90]]);
    assert(split.filter((n) => n === 2).length >= 10, `calls split over threads: ${split}`);
  } finally {
    k.close();
  }
});

Deno.test("lora: backward equals finite differences of a scalar loss", async () => {
  const k = await testKernels();
  const [M, IN, R, OUT] = [5, 7, 3, 6];
  const x = Float64Array.from(randn(M * IN, 11)), a = Float64Array.from(randn(R * IN, 12));
  const b = Float64Array.from(randn(OUT * R, 13)), w = randn(M * OUT, 14);
  // L = Σ ΔY ⊙ w in f64, so ∂L/∂ΔY = w.
  const loss = () => {
    const { dY } = loraForwardRef(x, a, b, M, IN, R, OUT, SCALE);
    let s = 0;
    for (let i = 0; i < dY.length; i++) s += dY[i] * w[i];
    return s;
  };
  const X = k.from(x), A = k.from(a), B = k.from(b), G = k.from(w);
  const XA = k.alloc(M * R), dY = k.alloc(M * OUT);
  const dX = k.alloc(M * IN), dA = k.alloc(R * IN), dB = k.alloc(OUT * R);
  try {
    loraForward(k, dY, XA, X, A, B, M, IN, R, OUT, SCALE);
    loraBackward(k, { dX, dA, dB }, G, X, XA, A, B, M, IN, R, OUT, SCALE);
    for (const [name, param, grad] of [["A", a, dA], ["B", b, dB], ["X", x, dX]] as const) {
      const numeric = Array.from(param, (_, i) => numericGrad(loss, param, i));
      assertClose(grad.data, numeric, { atol: 2e-4, rtol: 1e-3, msg: `d${name}:` });
    }
  } finally {
    for (const t of [X, A, B, G, XA, dY, dX, dA, dB]) t.free();
  }
});

Deno.test("lora: wrong sizes, aliasing and a bad scale are refused", async () => {
  const k = await testKernels();
  const [M, IN, R, OUT] = [4, 6, 2, 5];
  const X = k.alloc(M * IN), A = k.alloc(R * IN), B = k.alloc(OUT * R), XA = k.alloc(M * R);
  const dY = k.alloc(M * OUT), dX = k.alloc(M * IN), dA = k.alloc(R * IN), dB = k.alloc(OUT * R);
  try {
    assertThrows(
      () => loraForward(k, dY, XA, X, A, B, M, IN, 3, OUT, 1),
      /XA has 8 elements, expected M·R = 12/,
    );
    assertThrows(
      () => loraForward(k, dY, XA, X, A, B, M, IN, R, OUT, NaN),
      /scale must be finite/,
    );
    assertThrows(
      () => loraBackward(k, { dX: X, dA, dB }, dY, X, XA, A, B, M, IN, R, OUT, 1),
      /output dX overlaps input X/,
    );
    assertThrows(
      () => loraBackward(k, { dX, dA, dB: A }, dY, X, XA, A, B, M, IN, R, OUT, 1),
      /dB has 12 elements, expected OUT·R = 10/,
    );
  } finally {
    for (const t of [X, A, B, XA, dY, dX, dA, dB]) t.free();
  }
});

Deno.test("lora: flop counts", () => {
  assertEquals(loraForwardFlops(2048, 576, 16, 576), 2 * 2048 * 16 * 1152);
  assertEquals(loraBackwardFlops(2, 3, 4, 5), 2 * loraForwardFlops(2, 3, 4, 5));
  // Without dX: G·B, dB, dA only (2·M·R·IN less).
  assertEquals(loraBackwardFlops(2, 3, 4, 5, { dX: false }), 2 * 2 * 4 * (5 + 5 + 3));
});
