import { memoryFiles } from "../formats/hf.ts";
import { parseSafetensors, writeSafetensors } from "../formats/safetensors.ts";
import { syntheticConfig } from "../formats/synthetic.ts";
import { moduleKey, type Proj, projDims, PROJS } from "../model/modules.ts";
import { assert, assertClose, assertEquals, assertRejects, randn } from "../../tests/util.ts";
import {
  type Adapter,
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  loraScale,
  peftTensorName,
  readPeftAdapter,
  writePeftAdapter,
} from "./peft.ts";

const config = syntheticConfig("stories260k");

function makeAdapter(targets: Proj[], rank = 4, alpha = 8): Adapter {
  const modules = new Map();
  let seed = 1;
  for (let layer = 0; layer < config.nLayers; layer++) {
    for (const proj of targets) {
      const { inDim, outDim } = projDims(config, proj);
      modules.set(moduleKey(layer, proj), {
        layer,
        proj,
        rank,
        scale: loraScale(alpha, rank),
        A: randn(rank * inDim, seed++),
        B: randn(outDim * rank, seed++),
      });
    }
  }
  return {
    rank,
    alpha,
    useRslora: false,
    dropout: 0,
    targets,
    baseModel: "stories260K",
    modules,
    metadata: { dlora_active: "0.q" },
  };
}

Deno.test("PEFT adapter: names, shapes and config exactly as PEFT writes them; round trip", async () => {
  const adapter = makeAdapter([...PROJS]);
  const files = writePeftAdapter(adapter);
  const cfg = JSON.parse(new TextDecoder().decode(files[ADAPTER_CONFIG]));
  assertEquals(cfg.peft_type, "LORA");
  assertEquals(cfg.task_type, "CAUSAL_LM");
  assertEquals(cfg.r, 4);
  assertEquals(cfg.lora_alpha, 8);
  assertEquals(cfg.base_model_name_or_path, "stories260K");
  assertEquals(cfg.target_modules, [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
  ]);
  const st = parseSafetensors(files[ADAPTER_WEIGHTS]);
  assertEquals(st.tensors.size, config.nLayers * 7 * 2);
  const qa = st.tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  assertEquals(qa?.shape, [4, 64]);
  const db = st.tensors.get("base_model.model.model.layers.4.mlp.down_proj.lora_B.weight");
  assertEquals(db?.shape, [64, 4]);
  const kb = st.tensors.get("base_model.model.model.layers.2.self_attn.k_proj.lora_B.weight");
  assertEquals(kb?.shape, [32, 4]);
  assertEquals(st.metadata.dlora_active, "0.q");

  const back = await readPeftAdapter(memoryFiles(files, "out/adapter"), config);
  assertEquals(back.modules.size, adapter.modules.size);
  assertEquals(back.targets, [...PROJS]);
  for (const [key, m] of adapter.modules) {
    const r = back.modules.get(key)!;
    assertClose(r.A, m.A, { atol: 0, rtol: 0 });
    assertClose(r.B, m.B, { atol: 0, rtol: 0 });
    assertEquals(r.scale, 2);
  }
});

Deno.test("PEFT adapter written elsewhere: unknown keys ignored, .default names, rsLoRA, patterns", async () => {
  const { inDim } = projDims(config, "v");
  const { outDim } = projDims(config, "v");
  const tensors = {
    "base_model.model.model.layers.1.self_attn.v_proj.lora_A.default.weight": {
      dtype: "F32" as const,
      shape: [2, inDim],
      data: randn(2 * inDim, 3),
    },
    "base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight": {
      dtype: "F32" as const,
      shape: [outDim, 2],
      data: randn(outDim * 2, 4),
    },
  };
  const cfg = {
    peft_type: "LORA",
    r: 8,
    lora_alpha: 16,
    use_rslora: true,
    target_modules: ["v_proj"],
    rank_pattern: { "layers.1.self_attn.v_proj": 2 },
    some_future_option: { x: 1 },
    megatron_config: null,
  };
  const files = memoryFiles({
    [ADAPTER_CONFIG]: new TextEncoder().encode(JSON.stringify(cfg)),
    [ADAPTER_WEIGHTS]: writeSafetensors(tensors),
  });
  const a = await readPeftAdapter(files, config);
  const m = a.modules.get("1.v")!;
  assertEquals(m.rank, 2);
  assert(Math.abs(m.scale - 16 / Math.sqrt(2)) < 1e-12, `rsLoRA scale ${m.scale}`);
  assertEquals(a.targets, ["v"]);
});

Deno.test("PEFT adapter: bad inputs fail with the file and tensor named", async () => {
  const good = writePeftAdapter(makeAdapter(["q"]));
  const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
  const qA = peftTensorName(0, "q", "A");
  const cases: [string, Record<string, Uint8Array>, RegExp][] = [
    ["no config", { [ADAPTER_WEIGHTS]: good[ADAPTER_WEIGHTS] }, /adapter_config.json: missing/],
    ["bad json", { ...good, [ADAPTER_CONFIG]: new Uint8Array([123]) }, /not valid JSON/],
    ["not lora", { ...good, [ADAPTER_CONFIG]: enc({ peft_type: "IA3" }) }, /only LORA/],
    ["dora", { ...good, [ADAPTER_CONFIG]: enc({ r: 4, use_dora: true }) }, /DoRA/],
    ["rank mismatch", { ...good, [ADAPTER_CONFIG]: enc({ r: 8 }) }, /rank 4 but the config says 8/],
    [
      "missing half",
      {
        ...good,
        [ADAPTER_WEIGHTS]: writeSafetensors({
          [qA]: { dtype: "F32", shape: [4, 64], data: new Float32Array(256) },
        }),
      },
      /lora_B.weight is missing/,
    ],
    [
      "wrong shape",
      {
        ...good,
        [ADAPTER_WEIGHTS]: writeSafetensors({
          [qA]: { dtype: "F32", shape: [4, 32], data: new Float32Array(128) },
          [peftTensorName(0, "q", "B")]: {
            dtype: "F32",
            shape: [64, 4],
            data: new Float32Array(256),
          },
        }),
      },
      /shape \[4,32\], expected \[r, 64\]/,
    ],
    [
      "nan",
      {
        ...good,
        [ADAPTER_WEIGHTS]: writeSafetensors({
          [qA]: { dtype: "F32", shape: [4, 64], data: new Float32Array(256).fill(NaN) },
          [peftTensorName(0, "q", "B")]: {
            dtype: "F32",
            shape: [64, 4],
            data: new Float32Array(256),
          },
        }),
      },
      /non-finite/,
    ],
    [
      "layer out of range",
      {
        ...good,
        [ADAPTER_WEIGHTS]: writeSafetensors({
          [peftTensorName(9, "q", "A")]: {
            dtype: "F32",
            shape: [4, 64],
            data: new Float32Array(256),
          },
        }),
      },
      /layer 9 but the model has 5/,
    ],
  ];
  for (const [what, files, pattern] of cases) {
    const err = await assertRejects(
      () => readPeftAdapter(memoryFiles(files, "ad"), config),
      pattern,
    );
    assert(err.message.startsWith("ad/"), `${what}: message names the file: ${err.message}`);
  }
});
