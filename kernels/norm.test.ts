import type { F32 } from "./core.ts";
import { rmsnormBackward, rmsnormForward } from "./norm.ts";
import { rmsnormBackwardRef, rmsnormForwardRef } from "./reference/norm.ts";
import {
  assertClose,
  assertEquals,
  assertThrows,
  numericGrad,
  randn,
  testKernels,
} from "../tests/util.ts";

// (N rows = B·T, C channels): tiny, odd, vector-tail and Llama-sized rows
const SHAPES: [number, number][] = [[1, 1], [1, 3], [3, 7], [2, 8], [5, 17], [17, 64], [4, 288]];

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

Deno.test("rmsnorm forward matches the reference over shapes", async () => {
  const k = await testKernels();
  for (const [N, C] of SHAPES) {
    const x = randn(N * C, N * 100 + C, 2), w = randn(C, C + 7);
    const inp = k.from(x), weight = k.from(w), out = k.alloc(N * C), rstd = k.alloc(N);
    rmsnormForward(k, out, rstd, inp, weight);
    const ref = rmsnormForwardRef(x, w);
    assertClose(out.data, ref.out, { atol: 1e-6, rtol: 1e-5, msg: `out N=${N} C=${C}` });
    assertClose(rstd.data, ref.rstd, { atol: 1e-6, rtol: 1e-5, msg: `rstd N=${N} C=${C}` });
    for (const a of [inp, weight, out, rstd]) a.free();
  }
});

Deno.test("rmsnorm backward matches the reference, accumulates, skips a frozen weight", async () => {
  const k = await testKernels();
  for (const [N, C] of SHAPES) {
    const x = randn(N * C, N + C, 1.5), w = randn(C, 3 * C + 1), dy = randn(N * C, 5 * N + C);
    const inp = k.from(x), weight = k.from(w), out = k.alloc(N * C), rstd = k.alloc(N);
    rmsnormForward(k, out, rstd, inp, weight);
    const ref = rmsnormBackwardRef(dy, x, w);
    const msg = `N=${N} C=${C}`;
    const dout = k.from(dy), dinp = k.from(randn(N * C, 9)), dweight = k.from(randn(C, 11));
    const dw0 = dweight.toArray();
    rmsnormBackward(k, dinp, dweight, dout, inp, weight, rstd);
    assertClose(dinp.data, ref.dinp, { atol: 1e-5, rtol: 1e-4, msg: `dinp ${msg}` });
    assertClose(dweight.data, ref.dweight.map((v, i) => v + dw0[i]), {
      atol: 1e-5,
      rtol: 1e-4,
      msg: `dweight += ${msg}`,
    });
    // accumulate into dinp; dweight null leaves nothing to touch
    const base = randn(N * C, 13);
    dinp.set(base);
    const low = new Uint8Array(k.memory.buffer, 0, 4 * C + 64).slice(); // where a null pointer would land
    rmsnormBackward(k, dinp, null, dout, inp, weight, rstd, { accumulate: true });
    assertEquals([...new Uint8Array(k.memory.buffer, 0, low.length)], [...low], "null dweight");
    assertClose(dinp.data, ref.dinp.map((v, i) => v + base[i]), {
      atol: 1e-5,
      rtol: 1e-4,
      msg: `dinp += ${msg}`,
    });
    for (const a of [inp, weight, out, rstd, dout, dinp, dweight]) a.free();
  }
});

Deno.test("rmsnorm backward equals central differences of L = Σ out·R", async () => {
  const k = await testKernels();
  for (const [N, C] of [[1, 1], [3, 7], [2, 16]] as [number, number][]) {
    const x = Float64Array.from(randn(N * C, 21 + C, 1.5));
    const w = Float64Array.from(randn(C, 22 + C));
    const R = randn(N * C, 23 + C);
    const loss = () => dot(rmsnormForwardRef(x, w).out, R);
    const inp = k.from(x), weight = k.from(w), out = k.alloc(N * C), rstd = k.alloc(N);
    rmsnormForward(k, out, rstd, inp, weight);
    const dout = k.from(R), dinp = k.alloc(N * C), dweight = k.from(new Float32Array(C));
    rmsnormBackward(k, dinp, dweight, dout, inp, weight, rstd);
    const numX = x.map((_, i) => numericGrad(loss, x, i));
    const numW = w.map((_, i) => numericGrad(loss, w, i));
    assertClose(dinp.data, numX, { atol: 1e-4, rtol: 1e-3, msg: `dinp N=${N} C=${C}` });
    assertClose(dweight.data, numW, { atol: 1e-4, rtol: 1e-3, msg: `dweight N=${N} C=${C}` });
    for (const a of [inp, weight, out, rstd, dout, dinp, dweight]) a.free();
  }
});

Deno.test("rmsnorm rejects mismatched sizes with the expected count", async () => {
  const k = await testKernels();
  const arrs: F32[] = [k.alloc(12), k.alloc(3), k.alloc(4), k.alloc(4), k.alloc(11)];
  const [inp, rstd, weight, bad, out11] = arrs;
  assertThrows(
    () => rmsnormForward(k, out11, rstd, inp, weight),
    /out has 11 elements, expected N·C = 12/,
  );
  assertThrows(() => rmsnormForward(k, inp, bad, inp, weight), /rstd has 4 elements/);
  assertThrows(() => rmsnormForward(k, inp, rstd, out11, weight), /do not split into rows of 4/);
  for (const a of arrs) a.free();
});

Deno.test("rmsnorm forward: rows past the f32 sum-of-squares range stay normalized; non-finite rows stay non-finite", async () => {
  const k = await testKernels();
  const C = 64;
  const x = randn(3 * C, 77, 1);
  for (let i = 0; i < C; i++) x[i] *= 1e25; // row 0: Σx² ≈ 6e51, beyond f32
  x[C + 5] = Infinity; // row 1
  const w = new Float32Array(C).fill(1);
  const inp = k.from(x), weight = k.from(w), out = k.alloc(3 * C), rstd = k.alloc(3);
  rmsnormForward(k, out, rstd, inp, weight);
  const ref = rmsnormForwardRef(x.subarray(0, C), w); // the TS reference sums in f64
  assertClose(out.data.subarray(0, C), ref.out, { atol: 1e-6, rtol: 1e-5, msg: "huge row" });
  assertClose([rstd.data[0]], ref.rstd, { rtol: 1e-5, msg: "huge row rstd" });
  let rms = 0;
  for (let i = 0; i < C; i++) rms += out.data[i] ** 2;
  assertClose([rms / C], [1], { rtol: 1e-4, msg: "unit RMS" });
  assertEquals(out.data.subarray(C, 2 * C).some((v) => !Number.isFinite(v)), true);
  assertEquals(out.data.subarray(2 * C).every(Number.isFinite), true);
  for (const a of [inp, weight, out, rstd]) a.free();
});
