import { Kernels } from "./core.ts";
import { crossEntropyBackward, crossEntropyForward } from "./xent.ts";
import { crossEntropyBackwardRef, crossEntropyForwardRef } from "./reference/xent.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertThrows,
  numericGrad,
  randn,
  rng,
  testKernels,
} from "../tests/util.ts";

// [N = B·T rows, V]
const SHAPES: [number, number][] = [[1, 1], [1, 3], [3, 7], [17, 8], [5, 17], [64, 33], [4, 512]];

/** Targets in [0,V) with about a quarter ignored (-1). */
function targetsFor(N: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: N }, () => (r() < 0.25 ? -1 : Math.floor(r() * V)));
}

Deno.test("cross-entropy losses, mean and gradient match the reference, ignoring -1", async () => {
  const k = await testKernels();
  for (const [N, V] of SHAPES) {
    for (const offset of [0, 1000]) { // large logits: the max subtraction keeps it stable
      const x0 = randn(N * V, N * V, 8).map((v) => v + offset), t0 = targetsFor(N, V, N + V);
      const logits = k.from(x0), targets = k.from(t0, [N], "i32"), losses = k.alloc(N);
      const msg = `N=${N} V=${V} offset=${offset}`;
      const ref = crossEntropyForwardRef(x0, t0);
      const { meanLoss, count } = crossEntropyForward(k, losses, logits, targets);
      // loss = (max − x_t) + log Σ: no cancellation against a rounded lse
      assertClose(losses.data, ref.losses, { atol: 1e-6, rtol: 1e-5, msg: `losses ${msg}` });
      assertEquals(count, ref.count, msg);
      if (count > 0) assertClose([meanLoss], [ref.mean], { atol: 1e-6, rtol: 1e-5, msg });
      else assert(Number.isNaN(meanLoss), "mean of nothing is NaN");
      const dlogits = k.from(randn(N * V, 1)), losses2 = k.alloc(N);
      assertEquals(crossEntropyBackward(k, dlogits, logits, targets, { losses: losses2 }), count);
      const dref = crossEntropyBackwardRef(x0, t0, count > 0 ? 1 / count : 0);
      assertClose(dlogits.data, dref, { atol: 1e-7, rtol: 1e-5, msg: `dlogits ${msg}` });
      assertEquals([...losses2.data], [...losses.data], `backward's losses ${msg}`);
      // in place over the logits, with an explicit scale
      crossEntropyBackward(k, logits, logits, targets, { scale: 0.5 });
      assertClose(logits.data, crossEntropyBackwardRef(x0, t0, 0.5), {
        atol: 1e-7,
        rtol: 1e-5,
        msg: `in place ${msg}`,
      });
      for (const a of [logits, targets, losses, dlogits, losses2]) a.free();
    }
  }
});

Deno.test("cross-entropy gradient equals central differences of the mean loss", async () => {
  const k = await testKernels();
  for (const [N, V] of [[1, 1], [3, 5], [4, 9]] as [number, number][]) {
    const x0 = Float64Array.from(randn(N * V, 7 + V, 3));
    const t0 = Int32Array.from({ length: N }, (_, i) => (i === 1 ? -1 : (i * 3) % V));
    const loss = () => crossEntropyForwardRef(x0, t0).mean;
    const logits = k.from(x0), targets = k.from(t0, [N], "i32"), d = k.alloc(N * V);
    crossEntropyBackward(k, d, logits, targets);
    const num = x0.map((_, i) => numericGrad(loss, x0, i));
    assertClose(d.data, num, { atol: 1e-5, rtol: 1e-4, msg: `N=${N} V=${V}` });
    for (const a of [logits, targets, d]) a.free();
  }
});

Deno.test("cross-entropy on 2 threads gives the single-thread results", async () => {
  const one = await testKernels();
  const two = await Kernels.load({ threads: 2 });
  await new Promise((resolve) => setTimeout(resolve, 50)); // see attention.test.ts: worker start race
  try {
    const N = 37, V = 3001, x0 = randn(N * V, 5, 6), t0 = targetsFor(N, V, 6);
    const run = (k: Kernels) => {
      const logits = k.from(x0), targets = k.from(t0, [N], "i32"), losses = k.alloc(N);
      crossEntropyForward(k, losses, logits, targets);
      crossEntropyBackward(k, logits, logits, targets);
      const res = [losses.toArray(), logits.toArray()];
      for (const a of [logits, targets, losses]) a.free();
      return res;
    };
    const a = run(one), b = run(two);
    assertEquals([...b[0]], [...a[0]], "losses");
    assertEquals([...b[1]], [...a[1]], "dlogits");
  } finally {
    two.close();
  }
});

Deno.test("cross-entropy rejects targets outside the vocabulary other than -1", async () => {
  const k = await testKernels();
  const logits = k.alloc([2, 5]), losses = k.alloc(2), bad = k.from([0, 5], [2], "i32");
  assertThrows(
    () => crossEntropyForward(k, losses, logits, bad),
    /targets\[1\] = 5 is outside the vocabulary \[0, 5\) and is not -1/,
  );
  const three = k.from([0, 1, 2], [3], "i32");
  assertThrows(() => crossEntropyBackward(k, logits, logits, three), /do not split into rows of 3/);
  for (const a of [logits, losses, bad, three]) a.free();
});
