import { assert, assertEquals, assertThrows } from "../../tests/util.ts";
import { f16BitsToF32, f32ToF16Bits } from "./half.ts";
import { encodeGguf, ggufTensorBytes, type GgufValue, parseGguf } from "./gguf.ts";
import { ggufToLlama, loadGgufLlama, writeGguf } from "./gguf_llama.ts";
import { parseLlama2c } from "./llama2c.ts";
import { syntheticWeights } from "./synthetic.ts";
import { assertSameWeights, mapWeights, SHARED, STORIES_BIN } from "./testing.ts";

const storiesBytes = Deno.readFileSync(STORIES_BIN);
const stories = parseLlama2c(storiesBytes, "stories260K.bin");

Deno.test("llama2.c → GGUF (F32) → load gives identical weights; q/k stored as in llama2.c", () => {
  const bytes = writeGguf(stories, { modelName: "stories260K" });
  const g = parseGguf(bytes, "s.gguf");
  const m = g.metadata;
  assertEquals(m.get("general.architecture"), "llama");
  assertEquals(m.get("llama.embedding_length"), 64);
  assertEquals(m.get("llama.feed_forward_length"), 172);
  assertEquals(m.get("llama.attention.head_count_kv"), 4);
  assertEquals(m.get("llama.attention.layer_norm_rms_epsilon"), 1e-5);
  assertEquals(m.get("llama.rope.dimension_count"), 8);
  assertEquals(g.tensors.find((t) => t.name === "token_embd.weight")!.dims, [64, 512]);
  assertEquals(g.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!.dims, [172, 64]);
  assert(!g.tensors.some((t) => t.name === "output.weight"), "a tied head is not written");
  // llama.cpp keeps llama2.c's interleaved q/k rows: blk.0.attn_q is wq of layer 0 verbatim.
  const wqStart = 28 + 4 * (512 * 64 + 5 * 64);
  const attnQ = ggufTensorBytes(g, g.tensors.find((t) => t.name === "blk.0.attn_q.weight")!);
  assertEquals(
    Array.from(attnQ),
    Array.from(storiesBytes.subarray(wqStart, wqStart + 64 * 64 * 4)),
  );
  assertSameWeights(loadGgufLlama(bytes, "s.gguf"), stories);
});

Deno.test("GGUF round trip: untied head, F16/BF16 exact for their rounded values", () => {
  const u = syntheticWeights({ ...syntheticWeights("tiny").config, tiedEmbeddings: false }, 2);
  const back = loadGgufLlama(writeGguf(u), "u.gguf");
  assertSameWeights(back, u);
  assert(back.lmHead !== back.tokenEmbedding);
  const f16 = loadGgufLlama(writeGguf(stories, { type: "F16" }));
  const round16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));
  assertSameWeights(f16, mapWeights(stories, round16, { norms: false }));
  const bf = parseGguf(writeGguf(stories, { type: "BF16" }));
  assertEquals(bf.tensors.find((t) => t.name === "blk.1.attn_k.weight")!.typeName, "BF16");
  assertEquals(bf.tensors.find((t) => t.name === "blk.1.attn_norm.weight")!.typeName, "F32");
});

Deno.test("GGUF Q8_0 write → read within quantization error; rows not divisible by 32 stay F32", () => {
  const g = parseGguf(writeGguf(stories, { type: "Q8_0" }), "q.gguf");
  const typeOf = (n: string) => g.tensors.find((t) => t.name === n)!.typeName;
  assertEquals(typeOf("blk.0.attn_q.weight"), "Q8_0");
  assertEquals(typeOf("blk.0.ffn_gate.weight"), "Q8_0"); // rows of 64
  assertEquals(typeOf("blk.0.ffn_down.weight"), "F32"); // rows of 172
  assertEquals(typeOf("output_norm.weight"), "F32");
  assertEquals(g.metadata.get("general.file_type"), 7);
  const q = ggufToLlama(g);
  const check = (a: Float32Array, b: Float32Array, what: string) => {
    for (let blk = 0; blk < a.length / 32; blk++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(b[blk * 32 + j]));
      for (let j = 0; j < 32; j++) {
        const i = blk * 32 + j;
        if (Math.abs(a[i] - b[i]) > amax / 254 + amax * 1e-3) {
          throw new Error(`${what}[${i}]: ${a[i]} vs ${b[i]} (block max ${amax})`);
        }
      }
    }
  };
  check(q.tokenEmbedding, stories.tokenEmbedding, "tokenEmbedding");
  q.layers.forEach((l, i) => {
    for (const k of ["wq", "wk", "wv", "wo", "gate", "up"] as const) {
      check(l[k], stories.layers[i][k], `${i}.${k}`);
    }
    assertEquals(Array.from(l.down), Array.from(stories.layers[i].down));
  });
});

Deno.test("a converted GGUF carries its tokenizer", () => {
  const tokens = Array.from(
    { length: 512 },
    (_, i) => (i < 3 ? ["<unk>", "<s>", "</s>"][i] : `t${i}`),
  );
  const bytes = writeGguf(stories, {
    tokenizer: {
      model: "llama",
      tokens,
      scores: tokens.map((_, i) => -i),
      tokenTypes: tokens.map((_, i) => (i < 3 ? 3 : 1)),
      bosId: 1,
      eosId: 2,
      unknownId: 0,
      addBos: true,
    },
  });
  const g = parseGguf(bytes);
  assertEquals(g.metadata.get("tokenizer.ggml.model"), "llama");
  assertEquals((g.metadata.get("tokenizer.ggml.tokens") as string[]).slice(0, 4), [
    "<unk>",
    "<s>",
    "</s>",
    "t3",
  ]);
  assertEquals((g.metadata.get("tokenizer.ggml.scores") as Float32Array)[7], -7);
  assertEquals((g.metadata.get("tokenizer.ggml.token_type") as Int32Array)[1], 3);
  assertEquals(g.metadata.get("tokenizer.ggml.eos_token_id"), 2);
  assertEquals(g.metadata.get("tokenizer.ggml.add_bos_token"), true);
  assertEquals(ggufToLlama(g).config.vocabSize, 512);
  assertThrows(
    () => writeGguf(stories, { tokenizer: { model: "llama", tokens: ["a"] } }),
    /1 tokens, the model's vocabulary 512/,
  );
  // Copying another file's tokenizer keys with their stored types.
  const spm = parseGguf(
    Deno.readFileSync(new URL("fixtures/gguf/ggml-vocab-llama-spm.gguf", SHARED)),
  );
  const keys = [...spm.metadata.keys()].filter((k) => k.startsWith("tokenizer."));
  const copied = parseGguf(writeGguf(stories, {
    extraMetadata: new Map(keys.map((k) => [k, spm.metadata.get(k)!])),
    extraTypes: spm.metadataTypes,
  }));
  assertEquals((copied.metadata.get("tokenizer.ggml.tokens") as string[]).length, 32000);
  assertEquals(copied.metadataTypes.get("tokenizer.ggml.add_bos_token"), { type: 7 });
});

Deno.test("bad llama GGUF files fail naming the file and the tensor", () => {
  const g = parseGguf(writeGguf(stories));
  /** Rebuilds the file with metadata and tensors edited. */
  const rebuilt = (
    edit: (
      m: Map<string, GgufValue>,
      t: { name: string; dims: number[]; type: number; data: Uint8Array }[],
    ) => void,
  ) => {
    const metadata = new Map(g.metadata);
    const tensors = g.tensors.map((t) => ({
      name: t.name,
      dims: t.dims,
      type: t.type,
      data: ggufTensorBytes(g, t).slice(),
    }));
    edit(metadata, tensors);
    return encodeGguf({ metadata, types: g.metadataTypes, tensors });
  };
  const cases: [Uint8Array, RegExp][] = [
    [
      rebuilt((m) => m.set("general.architecture", "gpt2")),
      /^m\.gguf: general\.architecture is "gpt2"; only "llama" models load/,
    ],
    [rebuilt((m) => m.delete("general.architecture")), /general\.architecture is missing/],
    [
      rebuilt((m) => m.delete("llama.block_count")),
      /m\.gguf: metadata llama\.block_count is missing/,
    ],
    [
      rebuilt((m) => m.set("llama.attention.head_count", 7)),
      /impossible llama metadata: dim 64 is not divisible by nHeads 7/,
    ],
    [
      rebuilt((m) => m.set("llama.rope.dimension_count", 4)),
      /llama\.rope\.dimension_count 4 differs from the head size 8/,
    ],
    [
      rebuilt((_, t) => t.splice(t.findIndex((x) => x.name === "blk.2.ffn_up.weight"), 1)),
      /^m\.gguf: missing tensor blk\.2\.ffn_up\.weight$/,
    ],
    [
      rebuilt((_, t) => {
        const x = t.find((x) => x.name === "blk.1.attn_k.weight")!;
        x.dims = [32, 64];
      }),
      /m\.gguf: tensor blk\.1\.attn_k\.weight has dims \[32, 64\], the llama metadata implies \[64, 32\] \(ggml order\)/,
    ],
    [
      rebuilt((_, t) => {
        const x = t.find((x) => x.name === "blk.3.ffn_norm.weight")!;
        new DataView(x.data.buffer).setFloat32(4 * 9, NaN, true);
      }),
      /m\.gguf: tensor blk\.3\.ffn_norm\.weight has a non-finite value \(NaN\) at index 9/,
    ],
  ];
  for (const [bytes, re] of cases) assertThrows(() => loadGgufLlama(bytes, "m.gguf"), re);
  // An unsupported quantization names the tensor and the type.
  const q4 = rebuilt((_, t) => {
    const x = t.find((x) => x.name === "blk.4.ffn_gate.weight")!;
    x.type = 2; // Q4_0: 18 bytes per 32 values
    x.data = new Uint8Array((x.data.length / 4 / 32) * 18);
  });
  assertThrows(
    () => loadGgufLlama(q4, "m.gguf"),
    /m\.gguf: tensor blk\.4\.ffn_gate\.weight has ggml type Q4_0 \(id 2\), which this loader cannot decode \(supported: F32, F16, BF16, F64, Q8_0\)/,
  );
});
