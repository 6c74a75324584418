import { ropeBackward, ropeForward, type RopeShape, type RopeStyle, ropeTable } from "./rope.ts";
import { ropeRef } from "./reference/rope.ts";
import {
  assertClose,
  assertEquals,
  assertThrows,
  numericGrad,
  randn,
  testKernels,
} from "../tests/util.ts";

const STYLES: RopeStyle[] = ["interleaved", "rotate-half"];
// [B, T, NH, hs, pos0]: hs/2 odd and even, one pair, odd vector tails, late positions
const SHAPES: [number, number, number, number, number][] = [
  [1, 1, 1, 2, 0],
  [1, 3, 2, 6, 0],
  [2, 3, 6, 10, 5],
  [1, 17, 3, 8, 0],
  [2, 5, 2, 14, 100],
  [1, 4, 2, 64, 4000],
  [1, 64, 2, 16, 0],
];

Deno.test("rope table holds cos then sin of p·θ^(-2i/hs), exact to f32 at late positions", async () => {
  const k = await testKernels();
  const P = 4096, hs = 8, theta = 500000;
  const table = ropeTable(k, P, hs, theta);
  const d = table.data;
  for (const p of [0, 1, 777, 4095]) {
    for (let i = 0; i < hs / 2; i++) {
      const a = p * Math.pow(theta, -2 * i / hs);
      assertEquals(d[p * hs + i], Math.fround(Math.cos(a)), `cos p=${p} i=${i}`);
      assertEquals(d[p * hs + hs / 2 + i], Math.fround(Math.sin(a)), `sin p=${p} i=${i}`);
    }
  }
  table.free();
});

Deno.test("rope forward and backward match the reference in both styles", async () => {
  const k = await testKernels();
  for (const style of STYLES) {
    for (const [B, T, NH, hs, pos0] of SHAPES) {
      const shape: RopeShape = { B, T, NH, hs, pos0, style };
      const table = ropeTable(k, pos0 + T, hs);
      const x0 = randn(B * T * NH * hs, B + T + NH + hs, 2);
      const x = k.from(x0);
      const msg = `${style} B=${B} T=${T} NH=${NH} hs=${hs} pos0=${pos0}`;
      ropeForward(k, x, table, shape);
      // table rounding to f32 gives ~6e-8 relative error per factor
      assertClose(x.data, ropeRef(x0, shape), { atol: 2e-6, rtol: 1e-5, msg: `fwd ${msg}` });
      ropeBackward(k, x, table, shape);
      assertClose(x.data, x0, { atol: 2e-6, rtol: 1e-5, msg: `inverse ${msg}` });
      x.set(x0);
      ropeBackward(k, x, table, shape);
      assertClose(x.data, ropeRef(x0, shape, true), { atol: 2e-6, rtol: 1e-5, msg: `bwd ${msg}` });
      x.free();
      table.free();
    }
  }
});

Deno.test("rope backward equals central differences of L = Σ rope(x)·R", async () => {
  const k = await testKernels();
  for (const style of STYLES) {
    const shape: RopeShape = { B: 2, T: 3, NH: 2, hs: 6, pos0: 7, style };
    const n = 2 * 3 * 2 * 6;
    const x = Float64Array.from(randn(n, 31, 1.5)), R = randn(n, 32);
    const loss = () => ropeRef(x, shape).reduce((s, v, i) => s + v * R[i], 0);
    const table = ropeTable(k, 10, 6), dx = k.from(R);
    ropeBackward(k, dx, table, shape);
    const num = x.map((_, i) => numericGrad(loss, x, i));
    assertClose(dx.data, num, { atol: 1e-5, rtol: 1e-4, msg: style });
    dx.free();
    table.free();
  }
});

Deno.test("rotate-half equals interleaved after HF's permutation of the head dim", async () => {
  const k = await testKernels();
  for (const [B, T, NH, hs, pos0] of SHAPES) {
    const n = B * T * NH * hs, half = hs / 2;
    const inter = randn(n, 41 + hs, 2);
    // HF conversion: w.view(h, hs/2, 2, in).transpose(1, 2): element 2i+c moves to c·hs/2+i
    const perm = (src: ArrayLike<number>) => {
      const out = new Float32Array(n);
      for (let row = 0; row < n / hs; row++) {
        for (let i = 0; i < half; i++) {
          for (let c = 0; c < 2; c++) out[row * hs + c * half + i] = src[row * hs + 2 * i + c];
        }
      }
      return out;
    };
    const table = ropeTable(k, pos0 + T, hs);
    const a = k.from(inter), b = k.from(perm(inter));
    ropeForward(k, a, table, { B, T, NH, hs, pos0, style: "interleaved" });
    ropeForward(k, b, table, { B, T, NH, hs, pos0, style: "rotate-half" });
    assertClose(b.data, perm(a.data), { atol: 1e-6, rtol: 1e-6, msg: `hs=${hs} pos0=${pos0}` });
    for (const x of [a, b, table]) x.free();
  }
});

Deno.test("rope rejects odd head sizes and tables too short for the positions", async () => {
  const k = await testKernels();
  assertThrows(() => ropeTable(k, 4, 5), /head size 5 is odd/);
  const table = ropeTable(k, 4, 4), x = k.alloc(2 * 3 * 4);
  assertThrows(
    () => ropeForward(k, x, table, { B: 1, T: 3, NH: 2, hs: 4, pos0: 2 }),
    /P ≥ pos0\+T = 5/,
  );
  assertThrows(
    () => ropeForward(k, x, table, { B: 1, T: 3, NH: 3, hs: 4 }),
    /x has 24 elements, expected B·T·NH·hs = 36/,
  );
  table.free();
  x.free();
});
