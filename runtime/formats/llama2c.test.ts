import { assert, assertEquals, assertThrows } from "../../tests/util.ts";
import { type LlamaWeights, permuteHalfToInterleaved } from "../model/weights.ts";
import { parseLlama2c, writeLlama2c } from "./llama2c.ts";
import { syntheticWeights } from "./synthetic.ts";
import { assertSameWeights, sameConfig, STORIES_BIN } from "./testing.ts";

const storiesBytes = Deno.readFileSync(STORIES_BIN);

Deno.test("stories260K loads with its config; q/k rows become rotate-half", () => {
  const w = parseLlama2c(storiesBytes, "stories260K.bin");
  sameConfig(w.config, {
    dim: 64,
    hiddenDim: 172,
    nLayers: 5,
    nHeads: 8,
    nKvHeads: 4,
    vocabSize: 512,
    seqLen: 512,
    tiedEmbeddings: true,
    normEps: 1e-5,
    ropeTheta: 10000,
    bosId: 1,
    eosId: 2,
  });
  assert(w.lmHead === w.tokenEmbedding);
  // wq of layer 0 starts after header, embedding (512·64) and rms_att (5·64).
  const raw = new Float32Array(storiesBytes.slice(28 + 4 * (512 * 64 + 5 * 64)).buffer, 0, 64 * 64);
  assertEquals(Array.from(permuteHalfToInterleaved(w.layers[0].wq, 8, 8, 64)), Array.from(raw));
  assertEquals(w.tokenEmbedding[0], new DataView(storiesBytes.buffer).getFloat32(28, true));
});

Deno.test("writeLlama2c reproduces stories260K (model bytes exact, RoPE tables to 1 ulp)", () => {
  const out = writeLlama2c(parseLlama2c(storiesBytes, "stories260K.bin"));
  assertEquals(out.length, storiesBytes.length);
  const freqStart = 28 + 4 * 260032;
  for (let i = 0; i < freqStart; i++) {
    if (out[i] !== storiesBytes[i]) throw new Error(`byte ${i} differs`);
  }
  const a = new Float32Array(out.buffer, freqStart),
    b = new Float32Array(storiesBytes.slice(freqStart).buffer);
  for (let i = 0; i < a.length; i++) assert(Math.abs(a[i] - b[i]) <= 1.2e-7, `freq ${i}`);
});

Deno.test("llama2.c round trip: untied head and GQA shapes", () => {
  const w = syntheticWeights({ ...syntheticWeights("tiny").config, tiedEmbeddings: false }, 5);
  const bytes = writeLlama2c(w);
  assertEquals(new DataView(bytes.buffer).getInt32(20, true), -64);
  assertSameWeights(parseLlama2c(bytes, "u.bin"), w);
  const tied = syntheticWeights("tiny", 6);
  assertSameWeights(parseLlama2c(writeLlama2c(tied), "t.bin"), tied);
});

/** The version-1 export (norms first, 256-byte header), written here to test the reader. */
function writeV1(w: LlamaWeights): Uint8Array {
  const c = w.config, hs = c.dim / c.nHeads;
  const parts: Float32Array[] = [
    ...w.layers.map((l) => l.attnNorm),
    ...w.layers.map((l) => l.ffnNorm),
    w.finalNorm,
    w.tokenEmbedding,
    ...w.layers.map((l) => permuteHalfToInterleaved(l.wq, c.nHeads, hs, c.dim)),
    ...w.layers.map((l) => permuteHalfToInterleaved(l.wk, c.nKvHeads, hs, c.dim)),
    ...w.layers.map((l) => l.wv),
    ...w.layers.map((l) => l.wo),
    ...w.layers.map((l) => l.gate),
    ...w.layers.map((l) => l.down),
    ...w.layers.map((l) => l.up),
    ...(c.tiedEmbeddings ? [] : [w.lmHead]),
  ];
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(256 + 4 * n), dv = new DataView(out.buffer);
  dv.setUint32(0, 0x616b3432, true);
  dv.setInt32(4, 1, true);
  [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.seqLen]
    .forEach((v, i) => dv.setInt32(8 + 4 * i, v, true));
  out[36] = c.tiedEmbeddings ? 1 : 0;
  let pos = 256;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), pos);
    pos += p.byteLength;
  }
  return out;
}

Deno.test("llama2.c version 1 export reads the same model", () => {
  const w = syntheticWeights("tiny", 8);
  assertSameWeights(parseLlama2c(writeV1(w), "v1.bin"), w);
  const u = syntheticWeights({ ...w.config, tiedEmbeddings: false }, 9);
  assertSameWeights(parseLlama2c(writeV1(u), "v1u.bin"), u);
  const v2 = writeV1(w);
  new DataView(v2.buffer).setInt32(4, 2, true);
  assertThrows(
    () => parseLlama2c(v2, "v2.bin"),
    /v2\.bin: llama2\.c export version 2 is not supported/,
  );
});

Deno.test("bad llama2.c files fail naming the file and the problem", () => {
  const patched = (f: (dv: DataView, b: Uint8Array) => void) => {
    const b = storiesBytes.slice();
    f(new DataView(b.buffer), b);
    return b;
  };
  const nanAt = (floatIndex: number, v: number) =>
    patched((dv) => dv.setFloat32(28 + 4 * floatIndex, v, true));
  const w1Layer2 = 512 * 64 + 5 * (64 + 64 * 64 * 2 + 32 * 64 * 2 + 64) + 2 * 172 * 64 + 7;
  const cases: [Uint8Array, RegExp][] = [
    [
      storiesBytes.slice(0, 10),
      /^stories260K\.bin: truncated: 10 bytes is shorter than the 28-byte/,
    ],
    [storiesBytes.slice(0, 28), /truncated: header implies 1,056,540 bytes, file has 28$/],
    [
      storiesBytes.slice(0, 1_000_000),
      /^stories260K\.bin: truncated: header implies 1,056,540 bytes, file has 1,000,000$/,
    ],
    [
      storiesBytes.slice(0, storiesBytes.length - 1),
      /truncated: header implies 1,056,540 bytes, file has 1,056,539/,
    ],
    [
      new Uint8Array([...storiesBytes, 0, 0, 0, 0]),
      /header implies 1,056,540 bytes, file has 1,056,544 \(4 extra\)/,
    ],
    [
      patched((dv) => dv.setInt32(0, 0, true)),
      /impossible header \[0, 172, .*dim must be a positive integer/,
    ],
    [
      patched((dv) => dv.setInt32(0, 60, true)),
      /impossible header .*dim 60 is not divisible by nHeads 8/,
    ],
    [patched((dv) => dv.setInt32(16, 3, true)), /nHeads 8 is not a multiple of nKvHeads 3/],
    [patched((dv) => dv.setInt32(8, 1 << 30, true)), /truncated: header implies [\d,]+ bytes/],
    [patched((dv) => dv.setInt32(20, -512, true)), /truncated: header implies 1,187,612 bytes/],
    [
      nanAt(5, NaN),
      /stories260K\.bin: tensor token_embedding_table has a non-finite value \(NaN\) at index 5/,
    ],
    [
      nanAt(w1Layer2, Infinity),
      /tensor w1 \(layer 2\) has a non-finite value \(Infinity\) at index 7/,
    ],
    [
      nanAt(260031, -Infinity),
      /tensor rms_final_weight has a non-finite value \(-Infinity\) at index 63/,
    ],
  ];
  for (const [bytes, re] of cases) assertThrows(() => parseLlama2c(bytes, "stories260K.bin"), re);
});
