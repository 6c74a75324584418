import { Kernels } from "./mod.ts";
import { adamwStep, clipGradNorm, sumSquares } from "./optim.ts";
import { adamwStepRef, clipGradNormRef, sumSquaresRef } from "./reference/optim.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertThrows,
  randn,
  testKernels,
} from "../tests/util.ts";

const SIZES = [0, 1, 3, 4, 5, 7, 8, 17, 1000, 4097];

for (const noRelaxed of [false, true]) {
  Deno.test(`adamw matches the PyTorch-semantics reference over 6 steps, many sizes (${noRelaxed ? "plain SIMD" : "relaxed SIMD"})`, async () => {
    const k = await testKernels({ noRelaxed });
    const configs = [
      { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
      { lr: 3e-2, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 },
      { lr: 1e-2, beta1: 0, beta2: 0.5, eps: 1e-3, weightDecay: 0 },
    ];
    for (const n of SIZES) {
      for (const [ci, c] of configs.entries()) {
        const p0 = randn(n, n + 1), refP = p0.slice();
        const refM = new Float32Array(n), refV = new Float32Array(n);
        const param = k.from(p0), grad = k.alloc(n), m = k.alloc(n), v = k.alloc(n);
        m.data.fill(0);
        v.data.fill(0);
        for (let step = 1; step <= 6; step++) {
          const g = randn(n, 1000 * step + n + ci, step === 3 ? 1e-6 : 0.5); // one tiny-gradient step
          grad.set(g);
          adamwStep(k, { param, grad, m, v }, { ...c, step });
          adamwStepRef(refP, g, refM, refV, { ...c, step });
          const msg = `n=${n} config ${ci} step ${step}`;
          assertClose(m.data, refM, { atol: 1e-7, rtol: 1e-5, msg: `${msg} m` });
          assertClose(v.data, refV, { atol: 1e-9, rtol: 1e-5, msg: `${msg} v` });
          assertClose(param.data, refP, { atol: c.lr * 1e-4, rtol: 1e-6, msg: `${msg} param` });
        }
        for (const a of [param, grad, m, v]) a.free();
      }
    }
  });
}

Deno.test("adamw: zero gradient leaves pure decoupled decay θ·(1 − lr·wd)^t; defaults are PyTorch's", async () => {
  const k = await testKernels();
  const n = 9;
  const p0 = randn(n, 3);
  const param = k.from(p0), grad = k.alloc(n), m = k.alloc(n), v = k.alloc(n);
  for (const a of [grad, m, v]) a.data.fill(0);
  for (let step = 1; step <= 3; step++) {
    adamwStep(k, { param, grad, m, v }, { lr: 0.1, weightDecay: 0.5, step });
  }
  assertClose(param.data, Array.from(p0, (x) => x * 0.95 ** 3), { rtol: 1e-6 });
  // Defaults β = (0.9, 0.999), eps = 1e-8, wd = 0.01: first step moves each weight by ≈ lr·sign(g).
  const g = randn(n, 4);
  grad.set(g);
  param.set(p0);
  m.data.fill(0);
  v.data.fill(0);
  adamwStep(k, { param, grad, m, v }, { lr: 1e-3, step: 1 });
  const want = p0.slice();
  adamwStepRef(want, g, new Float32Array(n), new Float32Array(n), {
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    step: 1,
  });
  assertClose(param.data, want, { atol: 1e-7, rtol: 1e-6 });
  for (let i = 0; i < n; i++) {
    assertClose([param.data[i] - p0[i] * (1 - 1e-5)], [-1e-3 * Math.sign(g[i])], { atol: 1e-7 });
  }
  for (const a of [param, grad, m, v]) a.free();
});

Deno.test("adamw rejects mismatched lengths and bad hyper-parameters", async () => {
  const k = await testKernels();
  const a = k.alloc(4), b = k.alloc(5);
  assertThrows(
    () => adamwStep(k, { param: a, grad: b, m: a, v: a }, { lr: 1e-3, step: 1 }),
    /grad has 5 elements, expected param.length = 4/,
  );
  assertThrows(
    () => adamwStep(k, { param: a, grad: a, m: a, v: a }, { lr: 1e-3, step: 0 }),
    /step must be an integer ≥ 1/,
  );
  assertThrows(
    () => adamwStep(k, { param: a, grad: a, m: a, v: a }, { lr: 1e-3, beta2: 1, step: 1 }),
    /betas must lie in \[0, 1\)/,
  );
  assertThrows(
    () => adamwStep(k, { param: a, grad: a, m: a, v: a }, { lr: NaN, step: 1 }),
    /lr and weightDecay must be finite/,
  );
  a.free();
  b.free();
});

Deno.test("adamw split over two threads equals one thread", async () => {
  const k2 = await Kernels.load({ threads: 2 });
  const k1 = await testKernels();
  try {
    const n = (1 << 16) + 5;
    const p0 = randn(n, 1), g = randn(n, 2);
    const results: Float32Array[] = [];
    for (const k of [k1, k2]) {
      const param = k.from(p0), grad = k.from(g), m = k.alloc(n), v = k.alloc(n);
      m.data.fill(0);
      v.data.fill(0);
      adamwStep(k, { param, grad, m, v }, { lr: 1e-2, step: 1 });
      results.push(param.toArray());
      for (const a of [param, grad, m, v]) a.free();
    }
    assertEquals(k2.threads, 2);
    assert(results[0].every((x, i) => x === results[1][i]), "threaded AdamW differs");
  } finally {
    k2.close();
  }
});

Deno.test("sumSquares accumulates in f64 over many sizes", async () => {
  const k = await testKernels();
  for (const n of [...SIZES, 100_003]) {
    const x = randn(n, n + 9, 3);
    const a = k.from(x);
    const got = sumSquares(k, a);
    const want = sumSquaresRef(x);
    assert(Math.abs(got - want) <= 1e-12 * want, `n=${n}: ${got} vs ${want}`);
    a.free();
  }
  // f32 accumulation would lose the small terms here: 1e8 + 10000 × 1.
  const x = new Float32Array(10_001).fill(1);
  x[0] = 1e4;
  const a = k.from(x);
  assertEquals(sumSquares(k, a), 1e8 + 10_000);
  a.free();
});

Deno.test("clipGradNorm: global norm over several tensors, scales only above maxNorm, returns the pre-clip norm", async () => {
  const k = await testKernels();
  const sizes = [0, 1, 17, 1000, 4097];
  for (const maxNorm of [0.5, 5, 1e6]) {
    const gs = sizes.map((n, i) => randn(n, 40 + i, 0.1));
    const arrays = gs.map((g) => k.from(g));
    const refs = gs.map((g) => g.slice());
    const norm = clipGradNorm(k, arrays, maxNorm);
    const want = clipGradNormRef(refs, maxNorm);
    assert(Math.abs(norm - want) <= 1e-12 * want, `norm ${norm} vs ${want}`);
    arrays.forEach((a, i) =>
      assertClose(a.data, refs[i], { atol: 0, rtol: 0, msg: `maxNorm ${maxNorm}` })
    );
    if (maxNorm < norm) {
      const after = Math.sqrt(arrays.reduce((s, a) => s + sumSquares(k, a), 0));
      assertClose([after], [maxNorm], { rtol: 1e-5 });
    } else {
      arrays.forEach((a, i) => assertEquals(Array.from(a.data), Array.from(gs[i])));
    }
    arrays.forEach((a) => a.free());
  }
  assertEquals(clipGradNorm(k, [], 1), 0);
  const z = k.alloc(3);
  assertThrows(() => clipGradNorm(k, [z], 0), /maxNorm must be > 0/);
  z.free();
});

Deno.test("clipGradNorm policy: a NaN/Inf norm leaves grads untouched and is returned, or throws on request", async () => {
  const k = await testKernels();
  for (const bad of [NaN, Infinity]) {
    const a = k.from([1, 2, 3]), b = k.from([4, bad, 6]);
    const norm = clipGradNorm(k, [a, b], 1);
    assert(!Number.isFinite(norm), `norm ${norm}`);
    assertEquals(Array.from(a.data), [1, 2, 3]);
    assertThrows(
      () => clipGradNorm(k, [a, b], 1, { errorIfNonfinite: true }),
      /total gradient norm is/,
    );
    a.free();
    b.free();
  }
});
