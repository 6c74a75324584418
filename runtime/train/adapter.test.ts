import { assertClose, assertEquals } from "../../tests/util.ts";
import {
  type Adapter,
  ADAPTER_WEIGHTS,
  type LoraModule,
  readPeftAdapter,
  writePeftAdapter,
} from "../adapters/peft.ts";
import { memoryFiles } from "../formats/hf.ts";
import { parseSafetensors } from "../formats/safetensors.ts";
import { LlamaModel } from "../model/llama.ts";
import { projDims } from "../model/modules.ts";
import { referenceForward } from "../model/reference.ts";
import { kernelsWith, loadStories, randomIds, randomLora } from "../model/testing.ts";
import { ACTIVE_MODULES_KEY, loraFromAdapter, loraToAdapter } from "./adapter.ts";

const weights = loadStories();
const c = weights.config;

Deno.test("adapter: LocalLora → PEFT files → LocalLora gives the same logits", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, weights);
  const lora = randomLora(k, c, { targets: ["q", "v", "gate", "down"] }, 5, 0.1);
  lora.setActive(1, "v", false);
  lora.setActive(4, "down", false);
  try {
    const adapter = loraToAdapter(lora, { baseModel: "stories260K" });
    assertEquals(adapter.metadata[ACTIVE_MODULES_KEY], lora.activeKeys().join(","));
    assertEquals(adapter.modules.size, 5 * 4 - 2);
    const files = writePeftAdapter(adapter);
    // PEFT's own tensor names and shapes (A r×in, B out×r).
    const st = parseSafetensors(files[ADAPTER_WEIGHTS]);
    const qA = st.tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    const downB = st.tensors.get("base_model.model.model.layers.3.mlp.down_proj.lora_B.weight");
    assertEquals(qA?.shape, [4, c.dim]);
    assertEquals(downB?.shape, [c.dim, 4]);
    assertEquals(
      st.tensors.has("base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"),
      false,
    );

    const back = loraFromAdapter(k, c, await readPeftAdapter(memoryFiles(files), c));
    try {
      assertEquals(back.activeKeys(), lora.activeKeys());
      assertEquals(back.scale, lora.scale);
      const ids = randomIds(2 * 12, c.vocabSize, 9), shape = { B: 2, T: 12 };
      const want = await model.logits(ids, shape, { hooks: lora });
      const got = await model.logits(ids, shape, { hooks: back });
      assertClose(got, want, { atol: 0, rtol: 0 });
    } finally {
      back.free();
    }
  } finally {
    lora.free();
    model.free();
  }
});

Deno.test("adapter: per-module ranks and scales are padded and folded, same ΔY", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, weights);
  let seed = 1;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
  const module = (layer: number, proj: LoraModule["proj"], rank: number, scale: number) => {
    const { inDim, outDim } = projDims(c, proj);
    return {
      layer,
      proj,
      rank,
      scale,
      A: Float32Array.from({ length: rank * inDim }, () => 0.2 * rand()),
      B: Float32Array.from({ length: outDim * rank }, () => 0.2 * rand()),
    };
  };
  const mods = [module(0, "q", 2, 4), module(2, "up", 6, 0.5), module(4, "o", 3, 1 / Math.sqrt(3))];
  const adapter: Adapter = {
    rank: 2,
    alpha: 8,
    useRslora: false,
    dropout: 0,
    targets: ["q", "o", "up"],
    baseModel: "",
    modules: new Map(mods.map((m) => [`${m.layer}.${m.proj}`, m])),
    metadata: {},
  };
  const lora = loraFromAdapter(k, c, adapter);
  try {
    assertEquals(lora.rank, 6);
    assertEquals(lora.activeKeys(), ["0.q", "2.up", "4.o"]);
    const ids = randomIds(10, c.vocabSize, 4);
    const got = await model.logits(ids, { B: 1, T: 10 }, { hooks: lora });
    // The reference with scale 1 and each B multiplied by its module's own scale.
    const ref = referenceForward(weights, ids, null, 1, 10, {
      scale: 1,
      modules: new Map(mods.map((m) => [`${m.layer}.${m.proj}`, {
        A: m.A,
        B: m.B.map((b) => b * m.scale),
      }])),
    });
    assertClose(got, ref.logits, { atol: 2e-4, rtol: 1e-3 });
  } finally {
    lora.free();
    model.free();
  }
});
