import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/util.ts";
import { f16BitsToF32, f32ToF16Bits } from "./half.ts";
import {
  hfConfigJson,
  loadHfDirectory,
  memoryFiles,
  parseHfConfig,
  writeHfDirectory,
} from "./hf.ts";
import { denoDirectory, writeFiles } from "./io.ts";
import { parseLlama2c } from "./llama2c.ts";
import { parseSafetensors, writeSafetensors } from "./safetensors.ts";
import { syntheticWeights } from "./synthetic.ts";
import { assertSameWeights, mapWeights, sameConfig, STORIES_BIN } from "./testing.ts";

const stories = parseLlama2c(Deno.readFileSync(STORIES_BIN), "stories260K.bin");
const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("llama2.c → HF directory → load gives identical f32 weights", async () => {
  const files = writeHfDirectory(stories);
  assertEquals(Object.keys(files).sort(), ["config.json", "model.safetensors"]);
  const st = parseSafetensors(files["model.safetensors"]);
  assert(!st.tensors.has("lm_head.weight"), "a tied head is not written");
  assertEquals(st.tensors.get("model.layers.4.self_attn.k_proj.weight")!.shape, [32, 64]);
  assertEquals(st.tensors.get("model.layers.0.mlp.down_proj.weight")!.shape, [64, 172]);
  assertEquals(st.metadata, { format: "pt" });
  const config = JSON.parse(new TextDecoder().decode(files["config.json"]));
  assertEquals(config.architectures, ["LlamaForCausalLM"]);
  assertEquals(config.tie_word_embeddings, true);
  assertEquals(config.num_key_value_heads, 4);
  assertSameWeights(await loadHfDirectory(memoryFiles(files, "out")), stories);
});

Deno.test("HF directory on disk through io.ts, untied head", async () => {
  const w = syntheticWeights({ ...syntheticWeights("tiny").config, tiedEmbeddings: false }, 4);
  const dir = await Deno.makeTempDir({ prefix: "dlora-hf-" });
  try {
    await writeFiles(dir, writeHfDirectory(w));
    const back = await loadHfDirectory(denoDirectory(dir));
    assertSameWeights(back, w);
    assert(back.lmHead !== back.tokenEmbedding);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sharded HF directory with model.safetensors.index.json", async () => {
  const files = writeHfDirectory(stories, { shardBytes: 300_000 });
  const shards = Object.keys(files).filter((f) => f.endsWith(".safetensors")).sort();
  assert(shards.length >= 3, `${shards.length} shards`);
  assertEquals(shards[0], `model-00001-of-${String(shards.length).padStart(5, "0")}.safetensors`);
  const index = JSON.parse(new TextDecoder().decode(files["model.safetensors.index.json"]));
  assertEquals(index.metadata.total_size, 260032 * 4);
  assertEquals(Object.keys(index.weight_map).length, 1 + 5 * 9 + 1);
  assertSameWeights(await loadHfDirectory(memoryFiles(files, "sharded")), stories);
});

Deno.test("F16 and BF16 HF weights load exactly as their rounded values", async () => {
  const round16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));
  const half = await loadHfDirectory(memoryFiles(writeHfDirectory(stories, { dtype: "F16" })));
  assertSameWeights(half, mapWeights(stories, round16));
  const bf = await loadHfDirectory(memoryFiles(writeHfDirectory(stories, { dtype: "BF16" })));
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  const roundBf = (x: number) => {
    f[0] = x;
    u[0] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) & 0xffff0000;
    return f[0];
  };
  assertSameWeights(bf, mapWeights(stories, roundBf));
  const cfg = JSON.parse(
    new TextDecoder().decode(writeHfDirectory(stories, { dtype: "BF16" })["config.json"]),
  );
  assertEquals(cfg.torch_dtype, "bfloat16");
});

Deno.test("config.json: LlamaConfig defaults, eos lists, unsupported features", () => {
  const c = parseHfConfig(enc(JSON.stringify({
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    vocab_size: 49152,
    tie_word_embeddings: true,
    eos_token_id: [0, 5],
    bos_token_id: 0,
  })));
  sameConfig(c, {
    dim: 576,
    hiddenDim: 1536,
    nLayers: 30,
    nHeads: 9,
    nKvHeads: 3,
    vocabSize: 49152,
    seqLen: 2048,
    normEps: 1e-6,
    ropeTheta: 10000,
    tiedEmbeddings: true,
    bosId: 0,
    eosId: 0,
  });
  sameConfig(parseHfConfig(enc(hfConfigJson(stories.config))), stories.config);
  const base = JSON.parse(hfConfigJson(stories.config));
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ model_type: "qwen2" }, /c\.json: model_type is "qwen2"; only Llama models are supported/],
    [{ rope_scaling: { type: "llama3" } }, /rope_scaling .* is not supported/],
    [{ hidden_act: "gelu" }, /hidden_act "gelu" is not supported/],
    [{ attention_bias: true }, /attention_bias is not supported/],
    [{ hidden_size: undefined }, /missing hidden_size/],
    [
      { num_attention_heads: 7 },
      /head_dim 8 differs|impossible config: dim 64 is not divisible by nHeads 7/,
    ],
    [{ head_dim: 16 }, /head_dim 16 differs from hidden_size\/num_attention_heads = 8/],
    [{ vocab_size: 1.5 }, /vocab_size is not an integer/],
  ];
  for (const [patch, re] of cases) {
    assertThrows(() => parseHfConfig(enc(JSON.stringify({ ...base, ...patch })), "c.json"), re);
  }
  assertThrows(() => parseHfConfig(enc("{"), "c.json"), /c\.json: not valid JSON/);
});

Deno.test("bad HF directories fail naming the file and the tensor", async () => {
  const good = writeHfDirectory(stories);
  const sharded = writeHfDirectory(stories, { shardBytes: 300_000 });
  const st = parseSafetensors(good["model.safetensors"]);
  /** model.safetensors rebuilt with `edit` applied to its tensor list. */
  const rebuilt = (
    edit: (m: Map<string, { dtype: "F32"; shape: number[]; data: Uint8Array }>) => void,
  ) => {
    const m = new Map(
      [...st.tensors].map((
        [k, t],
      ) => [k, { dtype: "F32" as const, shape: t.shape, data: t.data.slice() }]),
    );
    edit(m);
    return { ...good, "model.safetensors": writeSafetensors(m) };
  };
  const index = JSON.parse(new TextDecoder().decode(sharded["model.safetensors.index.json"]));
  delete index.weight_map["model.norm.weight"];
  const nanBytes = new Uint8Array(new Float32Array([1, NaN]).buffer);
  const untiedConfig = enc(
    JSON.stringify({
      ...JSON.parse(new TextDecoder().decode(good["config.json"])),
      tie_word_embeddings: false,
    }),
  );
  const cases: [Record<string, Uint8Array>, RegExp][] = [
    [{ "model.safetensors": good["model.safetensors"] }, /^d\/config\.json: missing/],
    [
      { "config.json": good["config.json"] },
      /^d: neither model\.safetensors nor model\.safetensors\.index\.json/,
    ],
    [
      rebuilt((m) =>
        m.set("model.layers.0.self_attn.q_proj.bias", {
          dtype: "F32",
          shape: [64],
          data: new Uint8Array(256),
        })
      ),
      /d\/model\.safetensors: tensor model\.layers\.0\.self_attn\.q_proj\.bias: biases are not supported/,
    ],
    [
      rebuilt((m) => m.delete("model.layers.3.mlp.up_proj.weight")),
      /^d\/model\.safetensors: missing tensor model\.layers\.3\.mlp\.up_proj\.weight$/,
    ],
    [
      rebuilt((m) =>
        m.set("model.layers.1.self_attn.q_proj.weight", {
          dtype: "F32",
          shape: [32, 128],
          data: m.get("model.layers.1.self_attn.q_proj.weight")!.data,
        })
      ),
      /d\/model\.safetensors: tensor model\.layers\.1\.self_attn\.q_proj\.weight has shape \[32, 128\], config\.json implies \[64, 64\]/,
    ],
    [
      rebuilt((m) => m.get("model.norm.weight")!.data.set(nanBytes, 8)),
      /d\/model\.safetensors: tensor model\.norm\.weight has a non-finite value \(NaN\) at index 3/,
    ],
    [
      { ...good, "config.json": untiedConfig },
      /d\/model\.safetensors: missing tensor lm_head\.weight/,
    ],
    [
      { ...sharded, "model.safetensors.index.json": enc(JSON.stringify(index)) },
      /d\/model\.safetensors\.index\.json: weight_map has no tensor model\.norm\.weight/,
    ],
    [
      { ...sharded, "model.safetensors.index.json": enc('{"weight_map": {"x": "../evil"}}') },
      /weight_map\[x\] is not a shard file name/,
    ],
    [
      { ...good, "model.safetensors": good["model.safetensors"].slice(0, 100_000) },
      /d\/model\.safetensors: tensor .* run past the \d+ data bytes \(file truncated\?\)/,
    ],
  ];
  for (const [files, re] of cases) {
    await assertRejects(() => loadHfDirectory(memoryFiles(files, "d")), re);
  }
});
