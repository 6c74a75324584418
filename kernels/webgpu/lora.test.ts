import { Gpu, probeAdapter } from "./device.ts";
import { loraBackward, loraForward } from "./lora.ts";
import { loraBackwardRef, loraForwardRef } from "../reference/lora.ts";
import { loraBackward as wasmBackward, loraForward as wasmForward } from "../lora.ts";
import { assertClose, assertThrows, numericGrad, randn, testKernels } from "../../tests/util.ts";

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

function plus(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (v, i) => v + b[i]);
}

// (M, IN, R, OUT): tiny, odd, and a rank-8 case with tiles on both sides.
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [3, 5, 2, 7],
  [17, 33, 4, 9],
  [70, 40, 8, 65],
];

Deno.test({
  name: "WGSL loraForward matches the reference, with and without accumulate",
  ignore,
  fn: () =>
    withGpu(async (gpu) => {
      let seed = 1;
      for (const [M, IN, R, OUT] of SHAPES) {
        for (const accumulate of [false, true]) {
          const x = randn(M * IN, seed++), a = randn(R * IN, seed++), b = randn(OUT * R, seed++);
          const prior = randn(M * OUT, seed++);
          const X = gpu.tensor([M, IN], x), A = gpu.tensor([R, IN], a);
          const B = gpu.tensor([OUT, R], b), XA = gpu.tensor([M, R]);
          const dY = gpu.tensor([M, OUT], prior);
          loraForward(gpu, dY, XA, X, A, B, M, IN, R, OUT, 0.5, { accumulate });
          const want = loraForwardRef(x, a, b, M, IN, R, OUT, 0.5);
          const msg = `${M}×${IN}×${R}×${OUT}`;
          assertClose(await XA.read(), want.XA, { atol: 1e-4, rtol: 1e-4, msg });
          const wantY = accumulate ? plus(want.dY, prior) : want.dY;
          assertClose(await dY.read(), wantY, { atol: 1e-4, rtol: 1e-4, msg });
        }
      }
    }),
});

Deno.test({
  name: "WGSL loraBackward matches the reference under both accumulate flags, dX optional",
  ignore,
  fn: () =>
    withGpu(async (gpu) => {
      let seed = 50;
      // The last shape has enough tokens that dA and dB split their inner loop.
      for (const [M, IN, R, OUT] of [...SHAPES, [600, 24, 4, 20]]) {
        for (
          const [accumulateGrads, accumulateDx, withDx] of [
            [false, false, true],
            [true, true, true],
            [true, false, false],
          ]
        ) {
          const x = randn(M * IN, seed++), a = randn(R * IN, seed++), b = randn(OUT * R, seed++);
          const g = randn(M * OUT, seed++);
          const pA = randn(R * IN, seed++), pB = randn(OUT * R, seed++), pX = randn(M * IN, seed++);
          const s = 2 / R;
          const X = gpu.tensor([M, IN], x), A = gpu.tensor([R, IN], a);
          const B = gpu.tensor([OUT, R], b), G = gpu.tensor([M, OUT], g);
          const XA = gpu.tensor([M, R]), dY = gpu.tensor([M, OUT]);
          loraForward(gpu, dY, XA, X, A, B, M, IN, R, OUT, s);
          const dA = gpu.tensor([R, IN], pA), dB = gpu.tensor([OUT, R], pB);
          const dX = withDx ? gpu.tensor([M, IN], pX) : undefined;
          loraBackward(gpu, { dX, dA, dB }, G, X, XA, A, B, M, IN, R, OUT, s, {
            accumulateGrads,
            accumulateDx,
          });
          const want = loraBackwardRef(g, x, a, b, M, IN, R, OUT, s);
          const tol = { atol: 2e-4, rtol: 1e-4, msg: `${M}×${IN}×${R}×${OUT}` };
          assertClose(await dA.read(), accumulateGrads ? plus(want.dA, pA) : want.dA, tol);
          assertClose(await dB.read(), accumulateGrads ? plus(want.dB, pB) : want.dB, tol);
          if (dX) assertClose(await dX.read(), accumulateDx ? plus(want.dX, pX) : want.dX, tol);
          for (const t of [X, A, B, G, XA, dY, dA, dB, dX]) t?.free();
        }
      }
    }),
});

Deno.test({
  name: "WGSL LoRA forward and backward match the wasm kernels",
  ignore,
  fn: () =>
    withGpu(async (gpu) => {
      const k = await testKernels();
      let seed = 200;
      for (const [M, IN, R, OUT] of [...SHAPES, [130, 70, 16, 33]]) {
        const s = 1.5;
        const x = randn(M * IN, seed++), a = randn(R * IN, seed++), b = randn(OUT * R, seed++);
        const g = randn(M * OUT, seed++), prior = randn(M * OUT, seed++);
        // wasm
        const wX = k.from(x), wA = k.from(a), wB = k.from(b), wG = k.from(g);
        const wXA = k.alloc(M * R), wY = k.from(prior);
        const wdX = k.alloc(M * IN), wdA = k.alloc(R * IN), wdB = k.alloc(OUT * R);
        wasmForward(k, wY, wXA, wX, wA, wB, M, IN, R, OUT, s, { accumulate: true });
        wasmBackward(k, { dX: wdX, dA: wdA, dB: wdB }, wG, wX, wXA, wA, wB, M, IN, R, OUT, s);
        // WebGPU
        const X = gpu.tensor([M, IN], x), A = gpu.tensor([R, IN], a);
        const B = gpu.tensor([OUT, R], b), G = gpu.tensor([M, OUT], g);
        const XA = gpu.tensor([M, R]), dY = gpu.tensor([M, OUT], prior);
        const dX = gpu.tensor([M, IN]), dA = gpu.tensor([R, IN]), dB = gpu.tensor([OUT, R]);
        loraForward(gpu, dY, XA, X, A, B, M, IN, R, OUT, s, { accumulate: true });
        loraBackward(gpu, { dX, dA, dB }, G, X, XA, A, B, M, IN, R, OUT, s);
        const tol = { atol: 2e-4, rtol: 1e-4, msg: `${M}×${IN}×${R}×${OUT}` };
        for (
          const [name, got, want] of [
            ["XA", XA, wXA],
            ["dY", dY, wY],
            ["dX", dX, wdX],
            ["dA", dA, wdA],
            ["dB", dB, wdB],
          ] as const
        ) {
          assertClose(await got.read(), want.toArray(), { ...tol, msg: `${tol.msg} ${name}` });
        }
        for (const t of [wX, wA, wB, wG, wXA, wY, wdX, wdA, wdB]) t.free();
      }
    }),
});

Deno.test({
  name: "WGSL loraBackward matches central finite differences of L = Σ ΔY·P",
  ignore,
  fn: () =>
    withGpu(async (gpu) => {
      const [M, IN, R, OUT, s] = [5, 6, 3, 4, 0.75];
      const x = Float64Array.from(randn(M * IN, 1)), a = Float64Array.from(randn(R * IN, 2));
      const b = Float64Array.from(randn(OUT * R, 3)), P = randn(M * OUT, 4);
      const loss = () => {
        const { dY } = loraForwardRef(x, a, b, M, IN, R, OUT, s);
        return dY.reduce((acc, v, i) => acc + v * P[i], 0);
      };
      const X = gpu.tensor([M, IN], x), A = gpu.tensor([R, IN], a), B = gpu.tensor([OUT, R], b);
      const XA = gpu.tensor([M, R]), dY = gpu.tensor([M, OUT]), G = gpu.tensor([M, OUT], P);
      const dA = gpu.tensor([R, IN]), dB = gpu.tensor([OUT, R]), dX = gpu.tensor([M, IN]);
      loraForward(gpu, dY, XA, X, A, B, M, IN, R, OUT, s);
      loraBackward(gpu, { dX, dA, dB }, G, X, XA, A, B, M, IN, R, OUT, s);
      for (const [name, param, grad] of [["A", a, dA], ["B", b, dB], ["X", x, dX]] as const) {
        const numeric = Array.from(param, (_, i) => numericGrad(loss, param, i));
        assertClose(await grad.read(), numeric, { atol: 1e-3, rtol: 1e-3, msg: `d${name}` });
      }
    }),
});

Deno.test({
  name: "WGSL lora: wrong sizes and aliased buffers give actionable errors",
  ignore,
  fn: () =>
    withGpu(async (gpu) => {
      const X = gpu.tensor([3, 5]), A = gpu.tensor([2, 5]), B = gpu.tensor([7, 2]);
      const XA = gpu.tensor([3, 2]), dY = gpu.tensor([3, 7]);
      assertThrows(
        () => loraForward(gpu, dY, XA, X, A, B, 3, 5, 2, 6, 1),
        /dY has 21 elements, expected M·OUT = 18/,
      );
      assertThrows(
        () => loraForward(gpu, dY, A, X, A, B, 3, 5, 2, 7, 1),
        /XA has 10 elements/,
      );
      const dA = gpu.tensor([2, 5]), dB = gpu.tensor([7, 2]);
      assertThrows(
        () => loraBackward(gpu, { dA, dB: B }, dY, X, XA, A, B, 3, 5, 2, 7, 1),
        /B and dB are the same tensor/,
      );
      loraBackward(gpu, { dA, dB }, dY, X, XA, A, B, 3, 5, 2, 7, 1);
      await gpu.flush();
    }),
});
