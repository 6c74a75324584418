import { Kernels } from "./core.ts";
import { swigluBackward, swigluForward } from "./mlp.ts";
import { swigluBackwardRef, swigluForwardRef } from "./reference/mlp.ts";
import { assertClose, assertEquals, numericGrad, randn, testKernels } from "../tests/util.ts";

const SIZES = [1, 3, 4, 7, 17, 64, 1000, 3 * 5 * 172];

Deno.test("swiglu forward and backward match the reference over sizes", async () => {
  const k = await testKernels();
  for (const n of SIZES) {
    const g0 = randn(n, n, 6), u0 = randn(n, n + 1, 2), dh0 = randn(n, n + 2);
    const g = k.from(g0), u = k.from(u0), h = k.alloc(n), dh = k.from(dh0);
    const dg = k.from(randn(n, 5)), du = k.from(randn(n, 6)); // overwritten, not added to
    swigluForward(k, h, g, u);
    assertClose(h.data, swigluForwardRef(g0, u0), { atol: 1e-6, rtol: 1e-5, msg: `h n=${n}` });
    swigluBackward(k, dg, du, dh, g, u);
    const ref = swigluBackwardRef(dh0, g0, u0);
    assertClose(dg.data, ref.dg, { atol: 1e-6, rtol: 1e-5, msg: `dg n=${n}` });
    assertClose(du.data, ref.du, { atol: 1e-6, rtol: 1e-5, msg: `du n=${n}` });
    for (const a of [g, u, h, dh, dg, du]) a.free();
  }
});

Deno.test("swiglu stays finite and exact-enough at large |g|, in place too", async () => {
  const k = await testKernels();
  const g0 = new Float32Array([-1000, -100, -88, -30, 0, 30, 88, 100, 1000]);
  const u0 = new Float32Array(g0.length).fill(1.5);
  const g = k.from(g0), u = k.from(u0);
  swigluForward(k, u, g, u); // h over u
  assertClose(u.data, swigluForwardRef(g0, u0), { atol: 1e-6, rtol: 1e-6 });
  const dh = k.from(new Float32Array(g0.length).fill(1)), du = k.alloc(g0.length);
  u.set(u0);
  swigluBackward(k, dh, du, dh, g, u); // dg over dh
  const ref = swigluBackwardRef(new Float32Array(g0.length).fill(1), g0, u0);
  assertClose(dh.data, ref.dg, { atol: 1e-6, rtol: 1e-6 });
  assertClose(du.data, ref.du, { atol: 1e-6, rtol: 1e-6 });
  for (const a of [g, u, dh, du]) a.free();
});

Deno.test("swiglu backward equals central differences of L = Σ h·R", async () => {
  const k = await testKernels();
  const n = 23;
  const g0 = Float64Array.from(randn(n, 1, 4)),
    u0 = Float64Array.from(randn(n, 2)),
    R = randn(n, 3);
  const loss = () => swigluForwardRef(g0, u0).reduce((s, h, i) => s + h * R[i], 0);
  const g = k.from(g0), u = k.from(u0), dh = k.from(R), dg = k.alloc(n), du = k.alloc(n);
  swigluBackward(k, dg, du, dh, g, u);
  assertClose(dg.data, g0.map((_, i) => numericGrad(loss, g0, i)), { atol: 1e-5, rtol: 1e-4 });
  assertClose(du.data, u0.map((_, i) => numericGrad(loss, u0, i)), { atol: 1e-5, rtol: 1e-4 });
  for (const a of [g, u, dh, dg, du]) a.free();
});

Deno.test("swiglu on 2 threads gives the single-thread results", async () => {
  const one = await testKernels();
  const two = await Kernels.load({ threads: 2 });
  await new Promise((resolve) => setTimeout(resolve, 50)); // see attention.test.ts: worker start race
  try {
    const n = 100003, g0 = randn(n, 1, 5), u0 = randn(n, 2), dh0 = randn(n, 3);
    const run = (k: Kernels) => {
      const [g, u, dh, h, dg, du] = [
        k.from(g0),
        k.from(u0),
        k.from(dh0),
        k.alloc(n),
        k.alloc(n),
        k.alloc(n),
      ];
      swigluForward(k, h, g, u);
      swigluBackward(k, dg, du, dh, g, u);
      const res = [h.toArray(), dg.toArray(), du.toArray()];
      for (const a of [g, u, dh, h, dg, du]) a.free();
      return res;
    };
    const a = run(one), b = run(two);
    for (let i = 0; i < 3; i++) assertEquals([...b[i]], [...a[i]], `output ${i}`);
  } finally {
    two.close();
  }
});
