import { assert, assertClose, assertEquals, assertThrows, randn } from "../../tests/util.ts";
import { changeNorm, effectiveWeightChange, SensitivityAccumulator } from "./scores.ts";

/** s·(B·A) formed explicitly: (out, in), f64. A: (r, in), B: (out, r). */
function product(A: Float32Array, B: Float32Array, r: number, inDim: number, outDim: number) {
  const W = new Float64Array(outDim * inDim);
  for (let o = 0; o < outDim; o++) {
    for (let c = 0; c < inDim; c++) {
      let acc = 0;
      for (let i = 0; i < r; i++) acc += B[o * r + i] * A[i * inDim + c];
      W[o * inDim + c] = acc;
    }
  }
  return W;
}

function bruteEffective(
  A: Float32Array,
  B: Float32Array,
  A0: Float32Array,
  B0: Float32Array,
  r: number,
  inDim: number,
  outDim: number,
  s: number,
): number {
  const W = product(A, B, r, inDim, outDim), W0 = product(A0, B0, r, inDim, outDim);
  let sq = 0;
  for (let i = 0; i < W.length; i++) sq += (s * (W[i] - W0[i])) ** 2;
  return Math.sqrt(sq);
}

Deno.test("changeNorm: RMS of the change over A and B together", () => {
  const A = randn(21, 1), B = randn(14, 2), A0 = randn(21, 3), B0 = randn(14, 4);
  let sq = 0;
  for (let i = 0; i < 21; i++) sq += (A[i] - A0[i]) ** 2;
  for (let i = 0; i < 14; i++) sq += (B[i] - B0[i]) ** 2;
  assertClose([changeNorm([A, B], [A0, B0])], [Math.sqrt(sq / 35)], { rtol: 1e-12 });
  assertClose([changeNorm(A, A)], [0]);
  assertThrows(() => changeNorm([A, B], [A0, A0]), /part 1 has 14 elements now but 21/);
  assertThrows(() => changeNorm([A], [A0, B0]), /1 parts now but 2/);
});

Deno.test("effectiveWeightChange matches the formed product over shapes", () => {
  let seed = 10;
  for (const [r, inDim, outDim] of [[1, 1, 1], [1, 3, 7], [2, 7, 3], [4, 17, 5], [8, 16, 33]]) {
    for (const s of [1, 0.5, -2]) {
      const A = randn(r * inDim, seed++), B = randn(outDim * r, seed++);
      const A0 = randn(r * inDim, seed++), B0 = randn(outDim * r, seed++);
      const got = effectiveWeightChange(A, B, A0, B0, r, inDim, outDim, s);
      const want = bruteEffective(A, B, A0, B0, r, inDim, outDim, s);
      assertClose([got], [want], { rtol: 1e-10, atol: 1e-12, msg: `r=${r} ${inDim}→${outDim}` });
    }
  }
});

Deno.test("effectiveWeightChange: B = 0 at start (LoRA init), no change, symmetry invariance", () => {
  const r = 3, inDim = 11, outDim = 6;
  const A = randn(r * inDim, 1), B = randn(outDim * r, 2), zero = new Float32Array(outDim * r);
  // From the LoRA initialisation B₀ = 0 the change is ‖s·B·A‖_F.
  assertClose(
    [effectiveWeightChange(A, B, A, zero, r, inDim, outDim, 2)],
    [bruteEffective(A, B, A, zero, r, inDim, outDim, 2)],
    { rtol: 1e-10 },
  );
  assert(effectiveWeightChange(A, B, A, B, r, inDim, outDim) === 0, "no change scores 0");
  // Rescaling A by 2 and B by ½ changes θ but not B·A: the effective score stays ~0.
  const A2 = A.map((x) => x * 2), Bh = B.map((x) => x / 2);
  assert(effectiveWeightChange(A2, Bh, A, B, r, inDim, outDim) < 1e-6, "rescaling is no change");
  assert(changeNorm([A2, Bh], [A, B]) > 0.1, "while the parameter change is large");
  assertThrows(
    () => effectiveWeightChange(A, B, A, B, r, inDim + 1, outDim),
    /A has 33 elements, expected r·in = 36/,
  );
});

Deno.test("effectiveWeightChange keeps relative accuracy for tiny changes of a large product", () => {
  const r = 4, inDim = 64, outDim = 48;
  const A0 = randn(r * inDim, 5, 10), B0 = randn(outDim * r, 6, 10);
  const A = A0.slice(), B = B0.slice();
  // Perturb one entry of A by one f32 ulp-scale step: ‖ΔW‖ ≈ 1e-6·‖B‖ while ‖W‖ ≈ 1e3.
  A[7] = Math.fround(A[7] + Math.max(Math.abs(A[7]) * 2e-7, 1e-6));
  const want = bruteEffective(A, B, A0, B0, r, inDim, outDim, 1);
  const got = effectiveWeightChange(A, B, A0, B0, r, inDim, outDim, 1);
  assert(want > 0, "the perturbation is representable");
  assertClose([got], [want], { rtol: 1e-9, msg: "tiny change" });
});

Deno.test("SensitivityAccumulator sums |θ·∇θ| over parts and steps", () => {
  const acc = new SensitivityAccumulator();
  const A = randn(12, 1), gA = randn(12, 2), B = randn(5, 3), gB = randn(5, 4);
  let want = 0;
  for (let step = 0; step < 3; step++) {
    acc.add(A, gA);
    acc.add(B, gB);
    acc.endStep();
    for (let i = 0; i < 12; i++) want += Math.abs(A[i] * gA[i]);
    for (let i = 0; i < 5; i++) want += Math.abs(B[i] * gB[i]);
  }
  assertEquals(acc.steps, 3);
  assertClose([acc.value()], [want], { rtol: 1e-12 });
  assertClose([acc.mean()], [want / (3 * 17)], { rtol: 1e-12 });
  acc.reset();
  assertEquals([acc.value(), acc.mean(), acc.steps], [0, 0, 0]);
  assertThrows(() => acc.add(A, gB), /θ has 12 elements but ∇θ has 5/);
});
