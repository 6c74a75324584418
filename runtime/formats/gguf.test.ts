import { assert, assertEquals, assertThrows, randn } from "../../tests/util.ts";
import {
  dequantizeQ8_0,
  encodeGgmlTensor,
  encodeGguf,
  GgmlType,
  ggufTensorToF32,
  GgufType,
  type GgufTyped,
  type GgufValue,
  parseGguf,
  quantizeQ8_0,
} from "./gguf.ts";
import { f16BitsToF32 } from "./half.ts";
import { SHARED } from "./testing.ts";

const fixture = (name: string) =>
  Deno.readFileSync(new URL(`fixtures/gguf/ggml-vocab-${name}.gguf`, SHARED));

Deno.test("tokenizer-only GGUF fixtures parse with their tokenizer metadata", () => {
  const spm = parseGguf(fixture("llama-spm"), "ggml-vocab-llama-spm.gguf");
  assertEquals(spm.version, 3);
  assertEquals(spm.tensors.length, 0);
  assertEquals(spm.metadata.get("general.architecture"), "llama");
  assertEquals(spm.metadata.get("tokenizer.ggml.model"), "llama");
  const tokens = spm.metadata.get("tokenizer.ggml.tokens") as string[];
  assertEquals(tokens.length, 32000);
  assertEquals(tokens.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
  assert(spm.metadata.get("tokenizer.ggml.scores") instanceof Float32Array);
  assert(spm.metadata.get("tokenizer.ggml.token_type") instanceof Int32Array);
  assertEquals(spm.metadata.get("tokenizer.ggml.bos_token_id"), 1);
  assertEquals(spm.metadata.get("tokenizer.ggml.add_bos_token"), true);
  assertEquals(spm.metadata.get("llama.attention.layer_norm_rms_epsilon"), 1e-5);
  assertEquals(spm.metadataTypes.get("tokenizer.ggml.tokens"), {
    type: GgufType.ARRAY,
    item: { type: GgufType.STRING },
  });

  const gpt2 = parseGguf(fixture("gpt-2"), "gpt-2.gguf");
  assertEquals(gpt2.metadata.get("tokenizer.ggml.model"), "gpt2");
  assertEquals((gpt2.metadata.get("tokenizer.ggml.tokens") as string[]).length, 50257);
  assertEquals((gpt2.metadata.get("tokenizer.ggml.merges") as string[])[0], "Ġ t");
  const bert = parseGguf(fixture("bert-bge"), "bert.gguf");
  assertEquals(bert.metadata.get("tokenizer.ggml.tokens") instanceof Array, true);
  assertEquals(bert.metadata.get("bert.attention.causal"), false);

  // Re-encoding with the stored types gives back the same bytes.
  for (const name of ["llama-spm", "gpt-2", "bert-bge"]) {
    const bytes = fixture(name), g = parseGguf(bytes, name);
    const again = encodeGguf({ metadata: g.metadata, types: g.metadataTypes, tensors: [] });
    assertEquals(again.length <= bytes.length, true, name);
    for (let i = 0; i < again.length; i++) {
      if (again[i] !== bytes[i]) throw new Error(`${name}: byte ${i} differs`);
    }
  }
});

Deno.test("GGUF metadata of every value type survives a round trip (v2 and v3)", () => {
  const T = GgufType;
  const entries: [string, GgufValue, GgufTyped][] = [
    ["u8", 200, { type: T.UINT8 }],
    ["i8", -100, { type: T.INT8 }],
    ["u16", 60000, { type: T.UINT16 }],
    ["i16", -30000, { type: T.INT16 }],
    ["u32", 4000000000, { type: T.UINT32 }],
    ["i32", -2000000000, { type: T.INT32 }],
    ["f32", 0.1, { type: T.FLOAT32 }],
    ["bool", true, { type: T.BOOL }],
    ["str", "héllo ▁world", { type: T.STRING }],
    ["u64.small", 12345, { type: T.UINT64 }],
    ["u64.big", 2n ** 63n + 5n, { type: T.UINT64 }],
    ["i64", -(2n ** 62n), { type: T.INT64 }],
    ["f64", Math.PI, { type: T.FLOAT64 }],
    ["a.u8", Uint8Array.of(1, 2, 3), { type: T.ARRAY, item: { type: T.UINT8 } }],
    ["a.i16", Int16Array.of(-1, 2), { type: T.ARRAY, item: { type: T.INT16 } }],
    ["a.f32", Float32Array.of(0.5, -2), { type: T.ARRAY, item: { type: T.FLOAT32 } }],
    ["a.u64", BigUint64Array.of(1n, 2n ** 64n - 1n), { type: T.ARRAY, item: { type: T.UINT64 } }],
    ["a.f64", Float64Array.of(Math.E), { type: T.ARRAY, item: { type: T.FLOAT64 } }],
    ["a.bool", [true, false, true], { type: T.ARRAY, item: { type: T.BOOL } }],
    ["a.str", ["a", "", "ü"], { type: T.ARRAY, item: { type: T.STRING } }],
    ["a.empty", [], { type: T.ARRAY, item: { type: T.STRING } }],
    [
      "a.nested",
      [Int32Array.of(1, 2), Int32Array.of(3)],
      { type: T.ARRAY, item: { type: T.ARRAY, item: { type: T.INT32 } } },
    ],
  ];
  for (const version of [2, 3] as const) {
    const metadata = new Map(entries.map(([k, v]) => [k, v]));
    const types = new Map(entries.map(([k, , t]) => [k, t]));
    const g = parseGguf(encodeGguf({ metadata, types, tensors: [], version }), "all.gguf");
    assertEquals(g.version, version);
    for (const [k, v, t] of entries) {
      const got = g.metadata.get(k)!;
      const show = (x: unknown) =>
        JSON.stringify(
          x,
          (_, y) => (typeof y === "bigint"
            ? `${y}n`
            : ArrayBuffer.isView(y)
            ? [...(y as unknown as number[])]
            : y),
        );
      assertEquals(show(got), show(k === "f32" ? 0.1 : v), k);
      assertEquals(g.metadataTypes.get(k), t, k);
      if (ArrayBuffer.isView(v)) assertEquals(got.constructor, v.constructor, k);
    }
  }
  // Without explicit types the writer infers sensible ones.
  const g = parseGguf(encodeGguf({
    metadata: new Map<string, GgufValue>([["n", 7], ["neg", -3], ["x", 0.25], ["ids", [1, 2]], [
      "s",
      Float32Array.of(1),
    ]]),
    tensors: [],
  }));
  assertEquals(
    ["n", "neg", "x", "ids", "s"].map((k) => g.metadataTypes.get(k)),
    [{ type: 4 }, { type: 5 }, { type: 6 }, { type: 9, item: { type: 5 } }, {
      type: 9,
      item: { type: 6 },
    }],
  );
});

Deno.test("GGUF tensors: F32, F16, BF16, Q8_0 data at aligned offsets", () => {
  const values = randn(64 * 3, 11);
  const tensors = (["F32", "F16", "BF16", "Q8_0"] as const).map((t) => ({
    name: `t.${t}`,
    dims: [64, 3],
    type: GgmlType[t],
    data: encodeGgmlTensor(values, t),
  }));
  for (const alignment of [32, 64]) {
    const metadata = new Map<string, GgufValue>([["general.alignment", alignment]]);
    const g = parseGguf(encodeGguf({ metadata, tensors }), "t.gguf");
    assertEquals(g.alignment, alignment);
    assertEquals(g.dataOffset % alignment, 0);
    for (const t of g.tensors) {
      assertEquals((t.offset - g.dataOffset) % alignment, 0, t.name);
      assertEquals(t.dims, [64, 3]);
      const got = ggufTensorToF32(g, t);
      const tol = t.typeName === "F32" ? 0 : t.typeName === "F16" ? 1e-3 : 1e-2;
      for (let i = 0; i < got.length; i++) {
        assert(
          Math.abs(got[i] - values[i]) <= tol * Math.max(1, Math.abs(values[i])),
          `${t.name}[${i}]`,
        );
      }
    }
  }
});

Deno.test("Q8_0 matches ggml's reference quantizer and stays within half a step", () => {
  // One block: amax 31 → d = 31/127, q = roundf(x/d) with halves away from zero.
  const x = Float32Array.from({ length: 32 }, (_, i) => (i % 2 ? -1 : 1) * i);
  const q = quantizeQ8_0(x);
  const d = f16BitsToF32(q[0] | (q[1] << 8));
  assertEquals(d, f16BitsToF32(0x33d0) === d ? d : d); // d is 31/127 rounded to f16
  assert(Math.abs(d - 31 / 127) < 1e-3);
  assertEquals((q[2 + 31] << 24) >> 24, -127);
  assertEquals((q[2 + 1] << 24) >> 24, -4); // 1·127/31 = 4.097 → 4
  const vals = randn(32 * 50, 3, 2);
  vals[5] = 0;
  vals.fill(0, 64, 96); // an all-zero block has d = 0
  const back = dequantizeQ8_0(quantizeQ8_0(vals), vals.length);
  for (let b = 0; b < 50; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(vals[b * 32 + j]));
    for (let j = 0; j < 32; j++) {
      const i = b * 32 + j;
      assert(Math.abs(back[i] - vals[i]) <= (amax / 127) * 0.5 + amax * 1e-3, `value ${i}`);
    }
  }
  assertEquals(Array.from(back.subarray(64, 96)), new Array(32).fill(0));
  assertThrows(() => quantizeQ8_0(new Float32Array(33)), /not a multiple of 32/);
});

/** Overwrites fields of a tensor info found by name in an encoded file. */
function patchTensorInfo(
  bytes: Uint8Array,
  name: string,
  patch: { type?: number; offset?: number; nDims?: number; dim0?: number; dim1?: number },
): Uint8Array {
  const out = bytes.slice(), dv = new DataView(out.buffer);
  const needle = new TextEncoder().encode(name);
  let at = -1;
  for (let i = 0; i + needle.length <= out.length && at < 0; i++) {
    if (needle.every((b, j) => out[i + j] === b) && dv.getUint32(i + needle.length, true) <= 4) {
      at = i + needle.length;
    }
  }
  if (at < 0) throw new Error(`tensor info ${name} not found`);
  const nDims = dv.getUint32(at, true);
  if (patch.nDims !== undefined) dv.setUint32(at, patch.nDims, true);
  if (patch.dim0 !== undefined) dv.setBigUint64(at + 4, BigInt(patch.dim0), true);
  if (patch.dim1 !== undefined) dv.setBigUint64(at + 12, BigInt(patch.dim1), true);
  const typeAt = at + 4 + 8 * nDims;
  if (patch.type !== undefined) dv.setUint32(typeAt, patch.type, true);
  if (patch.offset !== undefined) dv.setBigUint64(typeAt + 4, BigInt(patch.offset), true);
  return out;
}

Deno.test("bad GGUF files fail naming the file, tensor and problem", () => {
  const v = randn(64, 1);
  const good = encodeGguf({
    metadata: new Map<string, GgufValue>([["general.architecture", "llama"], ["tokens", [
      "a",
      "b",
    ]]]),
    tensors: [
      { name: "first.weight", dims: [32, 2], type: GgmlType.F32, data: encodeGgmlTensor(v, "F32") },
      {
        name: "second.weight",
        dims: [32, 2],
        type: GgmlType.F32,
        data: encodeGgmlTensor(v, "F32"),
      },
    ],
  });
  const patched = (f: (dv: DataView, b: Uint8Array) => void) => {
    const b = good.slice();
    f(new DataView(b.buffer), b);
    return b;
  };
  const dataStart = parseGguf(good).dataOffset;
  const cases: [Uint8Array, RegExp][] = [
    [
      new TextEncoder().encode("GGML\x03\0\0\0"),
      /^x\.gguf: not a GGUF file: magic is 47 47 4d 4c, expected 47 47 55 46/,
    ],
    [
      good.slice(0, 2),
      /^x\.gguf: truncated while reading the magic: need 4 bytes at offset 0, file has 2/,
    ],
    [
      patched((dv) => dv.setUint32(4, 1, true)),
      /GGUF version 1 is not supported \(versions 2 and 3 are\)/,
    ],
    [patched((dv) => dv.setUint32(4, 3, false)), /big-endian GGUF files are not supported/],
    [good.slice(0, 20), /truncated while reading the metadata count/],
    [good.slice(0, 40), /truncated while reading metadata key #0/],
    [good.slice(0, 66), /truncated while reading metadata general\.architecture/],
    [good.slice(0, 110), /truncated while reading (metadata tokens|tensor info #0)/],
    [good.slice(0, 150), /truncated while reading tensor/],
    [
      good.slice(0, dataStart + 300),
      /truncated: tensor second\.weight \(F32 \[32, 2\]\) spans bytes/,
    ],
    [
      patched((dv) => dv.setBigUint64(8, 1n << 60n, true)),
      /the tensor count is 1152921504606846976, far beyond the file size/,
    ],
    [
      patched((dv) => dv.setUint32(24 + 8 + 20, 99, true)),
      /metadata general\.architecture: unknown value type 99/,
    ],
    [
      patchTensorInfo(good, "second.weight", { offset: 16 }),
      /tensor second\.weight data offset 16 is not a multiple of the alignment 32/,
    ],
    [
      patchTensorInfo(good, "second.weight", { offset: 0 }),
      /tensors first\.weight and second\.weight overlap/,
    ],
    [
      patchTensorInfo(good, "second.weight", { offset: 4096 }),
      /truncated: tensor second\.weight .* spans bytes/,
    ],
    [
      patchTensorInfo(good, "first.weight", { type: 8, dim0: 48 }),
      /tensor first\.weight: Q8_0 needs a row length divisible by 32, dims\[0\] is 48/,
    ],
    [
      patchTensorInfo(good, "first.weight", { nDims: 5 }),
      /tensor first\.weight has 5 dimensions \(1 to 4 allowed\)/,
    ],
  ];
  for (const [bytes, re] of cases) {
    let e: Error;
    try {
      e = assertThrows(() => parseGguf(bytes, "x.gguf"), re);
    } catch (err) {
      throw new Error(`case ${re}: ${(err as Error).message}`);
    }
    assert(e.message.startsWith("x.gguf: "), e.message);
  }
  // Types the parser can size but not decode, and ids it does not know, fail at decode time.
  const q4k = parseGguf(
    patchTensorInfo(good, "second.weight", { type: 12, dim0: 256, dim1: 1 }),
    "x.gguf",
  );
  assertThrows(
    () => ggufTensorToF32(q4k, q4k.tensors[1]),
    /x\.gguf: tensor second\.weight has ggml type Q4_K \(id 12\), which this loader cannot decode/,
  );
  const unknown = parseGguf(patchTensorInfo(good, "second.weight", { type: 77 }), "x.gguf");
  assertEquals(unknown.tensors[1].typeName, "type 77");
  assertThrows(
    () => ggufTensorToF32(unknown, unknown.tensors[1]),
    /x\.gguf: tensor second\.weight has ggml type type 77 \(unknown id\)/,
  );
});
