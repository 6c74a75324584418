import { assert, assertEquals, assertRejects } from "../../tests/util.ts";
import { loadModel } from "../load.ts";
import { LlamaModel } from "../model/llama.ts";
import { kernelsWith } from "../model/testing.ts";
import { train, type TrainOptions } from "./train.ts";

const { weights, tokenizer } = await loadModel("stories260K");
const TEXT = Deno.readTextFileSync(
  new URL("../../../shared/datasets/tinyshakespeare.txt", import.meta.url),
).slice(0, 20_000);

const small: TrainOptions = {
  model: weights,
  tokenizer: tokenizer!,
  text: TEXT,
  steps: 4,
  rank: 4,
  alpha: 8,
  targets: ["q", "v", "up", "down"],
  lr: 5e-3,
  batch: 2,
  seqLen: 32,
  accumulate: 2,
  warmup: 1,
  dropout: 0.1,
  seed: 3,
  threads: 1,
};

const bytesOf = (r: Awaited<ReturnType<typeof train>>) =>
  [...r.adapter.modules.values()].flatMap((m) => [...m.A, ...m.B]);

Deno.test("train: the same seed gives identical losses and adapters, another seed does not", async () => {
  const a = await train(small), b = await train(small);
  assertEquals(a.losses.length, 4);
  assert(a.losses.every(Number.isFinite), `losses ${a.losses}`);
  assertEquals(a.losses, b.losses);
  assertEquals(bytesOf(a), bytesOf(b));
  assertEquals(a.lora, null, "train loaded its own kernels and freed the LoRA");
  assertEquals(a.tokens, 4 * 2 * 2 * 32);
  assert(a.tokensPerSecond > 0);
  const other = await train({ ...small, seed: 4 });
  assert(other.losses[0] !== a.losses[0], "another seed draws other windows");
  // The adapter is what was trained: every target in every layer, scale alpha/rank.
  assertEquals(a.adapter.modules.size, 5 * 4);
  assertEquals(a.adapter.targets, ["q", "v", "up", "down"]);
  assertEquals([...a.adapter.modules.values()][0].scale, 2);
  assert(bytesOf(a).some((x, i) => i > 0 && x !== 0), "B moved away from 0");
});

Deno.test("train: a model already in memory trains the same and hands the LoRA back", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, weights);
  const steps: number[] = [];
  try {
    const own = await train(small);
    const r = await train({ ...small, model, onStep: (s) => void steps.push(s.step) });
    assertEquals(r.losses, own.losses);
    assertEquals(steps, [1, 2, 3, 4]);
    assert(r.lora !== null);
    assertEquals(r.lora.activeKeys().length, 20);
    r.lora.free();
  } finally {
    model.free();
  }
});

Deno.test("train: options a person can get wrong are named", async () => {
  await assertRejects(() => train({ ...small, steps: 0 }), /steps must be an integer ≥ 1/);
  await assertRejects(() => train({ ...small, lr: -1 }), /lr must be a positive number/);
  await assertRejects(() => train({ ...small, text: "To be" }), /lower --seq-len/);
  await assertRejects(
    () => train({ ...small, tokenizer: undefined }),
    /training text with its tokenizer/,
  );
  await assertRejects(
    () => train({ ...small, lr: 1e30, steps: 3, targets: undefined, dropout: 0 }),
    /lower --lr/,
  );
});
