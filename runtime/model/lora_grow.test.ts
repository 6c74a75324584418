import {
  assert,
  assertClose,
  assertEquals,
  assertRejects,
  assertThrows,
} from "../../tests/util.ts";
import { readPeftAdapter, writePeftAdapter } from "../adapters/peft.ts";
import { memoryFiles } from "../formats/hf.ts";
import { loraFromAdapter, loraToAdapter } from "../train/adapter.ts";
import { LlamaModel } from "./llama.ts";
import { kernelsWith, loadStories, randomIds, randomLora } from "./testing.ts";

const weights = loadStories();
const c = weights.config;

Deno.test("LocalLora.growRank keeps every output, grows A, B and the moments, and trains on", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, weights);
  const lora = randomLora(k, c, { rank: 4, alpha: 8 }, 3);
  const ids = randomIds(2 * 10, c.vocabSize, 4), shape = { B: 2, T: 10 };
  const targets = randomIds(2 * 10, c.vocabSize, 5);
  const batch = { ids, targets, ...shape };
  const opt = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
  try {
    await model.trainStep(batch, lora, opt); // moments and a step count exist now
    const before = await model.logits(ids, shape, { hooks: lora });
    const old = lora.weights(1, "gate"), oldState = lora.optimizerState(1, "gate");

    // k (64 → 32) stops at min(in, out) = 32; 3.q is not asked; 1.gate grows to 16.
    assertEquals(lora.growRank(["1.gate", "2.k", "0.v"], 16, 7), ["1.gate", "2.k", "0.v"]);
    assertEquals(lora.rankOf(1, "gate"), 16);
    assertEquals(lora.rankOf(0, "v"), 16);
    assertEquals(lora.rankOf(3, "q"), 4);
    assertEquals(lora.growRank(["2.k"], 64), ["2.k"]);
    assertEquals(lora.rankOf(2, "k"), c.nKvHeads * (c.dim / c.nHeads));
    assertEquals(lora.growRank(["1.gate"], 8), [], "never shrinks");
    assertEquals(
      lora.parameterCount(["1.gate", "3.q"]),
      16 * (c.dim + c.hiddenDim) + 4 * 2 * c.dim,
    );

    // The same model function: B's new columns are zero.
    assertClose(await model.logits(ids, shape, { hooks: lora }), before, { atol: 1e-6, rtol: 0 });
    const w = lora.weights(1, "gate"), D = c.dim, H = c.hiddenDim;
    assertEquals(w.A.length, 16 * D);
    assertEquals([...w.A.subarray(0, 4 * D)], [...old.A], "A's first rows are kept");
    assert(w.A.subarray(4 * D).some((x) => x !== 0), "new rows of A are drawn");
    for (let o = 0; o < H; o++) {
      assertEquals([...w.B.subarray(o * 16, o * 16 + 4)], [...old.B.subarray(o * 4, o * 4 + 4)]);
      assert(w.B.subarray(o * 16 + 4, o * 16 + 16).every((x) => x === 0), "new B columns are 0");
    }
    const state = lora.optimizerState(1, "gate");
    assertEquals(state.step, oldState.step, "the step count (bias correction) is kept");
    assertEquals(state.m.length, 16 * (D + H));
    assertEquals([...state.m.subarray(0, 4 * D)], [...oldState.m.subarray(0, 4 * D)]);

    // Training goes on at the new rank: the new directions move, gradients are zeroed per step.
    await model.trainStep(batch, lora, opt);
    const after = lora.weights(1, "gate");
    assert(after.B.some((x, i) => i % 16 >= 4 && x !== 0), "B's new columns train");
    lora.zeroGrad();
    assert(lora.grads(1, "gate").dA.every((x) => x === 0));

    // Exported to PEFT with rank_pattern and alpha_pattern (s stays alpha / 4), read back the same.
    const files = writePeftAdapter(loraToAdapter(lora, { baseModel: "stories260K" }));
    const config = JSON.parse(new TextDecoder().decode(files["adapter_config.json"]));
    assertEquals(config.r, 4);
    assertEquals(config.rank_pattern["model.layers.1.mlp.gate_proj"], 16);
    assertEquals(config.alpha_pattern["model.layers.1.mlp.gate_proj"], 32);
    assertEquals(config.rank_pattern["model.layers.3.self_attn.q_proj"], undefined);
    const back = loraFromAdapter(k, c, await readPeftAdapter(memoryFiles(files), c));
    try {
      const want = await model.logits(ids, shape, { hooks: lora });
      assertClose(await model.logits(ids, shape, { hooks: back }), want, { atol: 1e-5, rtol: 0 });
    } finally {
      back.free();
    }
  } finally {
    lora.free();
    model.free();
  }
});

Deno.test("LocalLora.growRank refuses bad ranks and unknown modules; a grown module forgets its forward", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, weights);
  const lora = randomLora(k, c, { rank: 4, alpha: 8 }, 3);
  try {
    assertThrows(() => lora.growRank(["1.q"], 0), /positive integer/);
    assertThrows(() => lora.growRank(["1.q", "9.q"], 8), /no module "9.q"/);
    assertEquals(lora.rankOf(1, "q"), 4, "a refused growth changes nothing");
    const ids = randomIds(10, c.vocabSize, 4);
    await model.forwardLoss(ids, ids, { B: 1, T: 10 }, { hooks: lora, grad: true });
    lora.growRank(["1.q"], 8);
    await assertRejects(() => model.backward(lora), /no forward of this module/);
  } finally {
    lora.free();
    model.free();
  }
});
