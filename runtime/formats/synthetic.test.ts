import { assert, assertEquals, assertThrows } from "../../tests/util.ts";
import { parameterCount, validateWeights } from "../model/weights.ts";
import { SYNTHETIC_PRESETS, syntheticConfig, syntheticWeights } from "./synthetic.ts";

Deno.test("synthetic presets have the advertised shapes", () => {
  const smol = syntheticConfig("smollm-135m");
  assertEquals(
    [
      smol.dim,
      smol.nLayers,
      smol.nHeads,
      smol.nKvHeads,
      smol.hiddenDim,
      smol.vocabSize,
      smol.seqLen,
    ],
    [576, 30, 9, 3, 1536, 49152, 2048],
  );
  assert(smol.tiedEmbeddings);
  assertEquals(parameterCount(smol), 134515008);
  const tiny = syntheticConfig("tiny");
  assertEquals(
    [tiny.dim, tiny.nLayers, tiny.nHeads, tiny.nKvHeads, tiny.hiddenDim, tiny.vocabSize],
    [32, 2, 4, 2, 64, 64],
  );
  assertThrows(
    () => syntheticConfig("gpt-5"),
    /unknown synthetic preset "gpt-5"; known: smollm-135m, stories260k, tiny/,
  );
  syntheticConfig("tiny").dim = 1; // a copy: the preset table stays intact
  assertEquals(SYNTHETIC_PRESETS.tiny.dim, 32);
});

Deno.test("synthetic weights: seeded, N(0, 0.02²) matrices, unit norms, valid", () => {
  const a = syntheticWeights("stories260k", 1), b = syntheticWeights("stories260k", 1);
  const c = syntheticWeights("stories260k", 2);
  validateWeights(a, "synthetic");
  assertEquals(
    Array.from(a.layers[3].wo.subarray(0, 50)),
    Array.from(b.layers[3].wo.subarray(0, 50)),
  );
  assert(a.layers[3].wo[0] !== c.layers[3].wo[0]);
  assert(a.lmHead === a.tokenEmbedding);
  assert(a.layers[0].attnNorm.every((x) => x === 1) && a.finalNorm.every((x) => x === 1));
  let s = 0, s2 = 0, s4 = 0;
  const m = a.layers[2].gate;
  for (const x of m) {
    s += x;
    s2 += x * x;
    s4 += x ** 4;
  }
  const n = m.length, std = Math.sqrt(s2 / n);
  assert(Math.abs(s / n) < 1e-3, `mean ${s / n}`);
  assert(Math.abs(std - 0.02) < 1e-3, `std ${std}`);
  assert(Math.abs(s4 / n / std ** 4 - 3) < 0.2, `kurtosis ${s4 / n / std ** 4} (normal: 3)`);
  const untied = syntheticWeights({ ...syntheticConfig("tiny"), tiedEmbeddings: false }, 0);
  assert(untied.lmHead !== untied.tokenEmbedding);
  validateWeights(untied, "synthetic");
});
