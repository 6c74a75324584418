import { assertEquals, assertThrows, randn } from "../../tests/util.ts";
import {
  type LlamaConfig,
  parameterCount,
  permuteHalfToInterleaved,
  permuteInterleavedToHalf,
  validateConfig,
  validateWeights,
} from "./weights.ts";
import { syntheticWeights } from "../formats/synthetic.ts";

Deno.test("permuteInterleavedToHalf matches HF's view(h, hs/2, 2, in).transpose(1, 2)", () => {
  // 2 heads, hs 4, in 1: interleaved rows (h, i, j) → rotate-half rows (h, j, i).
  const w = Float32Array.from([0, 1, 2, 3, 10, 11, 12, 13]);
  assertEquals(Array.from(permuteInterleavedToHalf(w, 2, 4, 1)), [0, 2, 1, 3, 10, 12, 11, 13]);
  // hs 6: pairs (0,1) (2,3) (4,5) → evens then odds.
  const v = Float32Array.from([0, 1, 2, 3, 4, 5]);
  assertEquals(Array.from(permuteInterleavedToHalf(v, 1, 6, 1)), [0, 2, 4, 1, 3, 5]);
  // Whole rows move: in = 3.
  const m = Float32Array.from({ length: 12 }, (_, i) => i);
  const p = permuteInterleavedToHalf(m, 1, 4, 3);
  assertEquals(Array.from(p), [0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]);
});

Deno.test("permuteHalfToInterleaved inverts permuteInterleavedToHalf", () => {
  for (const [heads, hs, inDim] of [[1, 2, 1], [8, 8, 64], [3, 6, 7], [9, 64, 5]]) {
    const w = randn(heads * hs * inDim, heads + hs + inDim);
    const there = permuteInterleavedToHalf(w, heads, hs, inDim);
    assertEquals(Array.from(permuteHalfToInterleaved(there, heads, hs, inDim)), Array.from(w));
    assertEquals(
      Array.from(
        permuteInterleavedToHalf(permuteHalfToInterleaved(w, heads, hs, inDim), heads, hs, inDim),
      ),
      Array.from(w),
    );
  }
  assertThrows(
    () => permuteInterleavedToHalf(new Float32Array(10), 2, 4, 1),
    /10 values, expected 2·4·1/,
  );
  assertThrows(() => permuteInterleavedToHalf(new Float32Array(6), 2, 3, 1), /odd/);
});

Deno.test("validateConfig names the impossible field", () => {
  const ok: LlamaConfig = syntheticWeights("tiny").config;
  validateConfig(ok, "x");
  const cases: [Partial<LlamaConfig>, RegExp][] = [
    [{ dim: 0 }, /x: dim must be a positive integer, got 0/],
    [{ dim: 30 }, /dim 30 is not divisible by nHeads 4/],
    [{ nKvHeads: 3 }, /nHeads 4 is not a multiple of nKvHeads 3/],
    [{ dim: 12, nHeads: 4, nKvHeads: 4 }, /head size 3 is odd/],
    [{ bosId: 64 }, /bosId 64 is outside the vocabulary/],
    [{ normEps: 0 }, /normEps/],
  ];
  for (const [patch, re] of cases) assertThrows(() => validateConfig({ ...ok, ...patch }, "x"), re);
});

Deno.test("validateWeights catches sizes, tying and non-finite values", () => {
  const w = syntheticWeights("tiny", 3);
  validateWeights(w, "m");
  assertEquals(parameterCount(syntheticWeights("stories260k").config), 260032);
  const bad = syntheticWeights("tiny", 3);
  bad.layers[1].up[5] = NaN;
  assertThrows(
    () => validateWeights(bad, "m"),
    /m: tensor layers\.1\.up has a non-finite value \(NaN\) at index 5/,
  );
  const short = syntheticWeights("tiny", 3);
  short.layers[0].wk = new Float32Array(3);
  assertThrows(
    () => validateWeights(short, "m"),
    /tensor layers\.0\.wk has 3 values, expected 16×32/,
  );
  const untied = syntheticWeights("tiny", 3);
  untied.lmHead = untied.tokenEmbedding.slice();
  assertThrows(() => validateWeights(untied, "m"), /tiedEmbeddings is true but lmHead is not/);
});
