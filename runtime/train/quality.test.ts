/**
 * The key quality check of issue 3: LoRA fine-tuning stories260K (trained on TinyStories) on
 * TinyShakespeare lowers the §7 held-out NLL by at least a nat. Held-out = the last 10 % of the
 * file (never trained on); to keep the test short both NLLs are measured on the first 20,000
 * tokens of that part (BOS included), the same tokens before and after.
 */
import { assert } from "../../tests/util.ts";
import { splitText } from "../data/text.ts";
import { loadModel } from "../load.ts";
import { LlamaModel } from "../model/llama.ts";
import { kernelsWith } from "../model/testing.ts";
import { heldOutNll } from "./nll.ts";
import { train } from "./train.ts";

Deno.test("train: LoRA on TinyShakespeare lowers stories260K's held-out NLL by ≥ 1 nat", async () => {
  const { weights, tokenizer } = await loadModel("stories260K");
  const text = await Deno.readTextFile(
    new URL("../../../shared/datasets/tinyshakespeare.txt", import.meta.url),
  );
  const { train: trainText, eval: heldOut } = splitText(text, 0.1);
  const k = await kernelsWith(2);
  const model = new LlamaModel(k, weights);
  const evalOpts = { maxTokens: 20_000 };
  try {
    const t0 = performance.now();
    const before = await heldOutNll(model, tokenizer!, heldOut, 256, evalOpts);
    // 30 steps × 8 × 256 tokens ≈ 61k tokens; lr 1e-2 suits a model this small.
    const r = await train({
      model,
      tokenizer: tokenizer!,
      text: trainText,
      steps: 30,
      rank: 8,
      alpha: 16,
      lr: 1e-2,
      batch: 8,
      seqLen: 256,
      warmup: 2,
      seed: 0,
    });
    const after = await heldOutNll(model, tokenizer!, heldOut, 256, {
      ...evalOpts,
      hooks: r.lora!,
    });
    r.lora!.free();
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `held-out NLL on ${after.tokens} tokens: ${before.mean_nll.toFixed(3)} → ` +
        `${after.mean_nll.toFixed(3)} nats (train loss ${r.losses[0].toFixed(3)} → ` +
        `${r.losses.at(-1)!.toFixed(3)}), ${seconds.toFixed(1)} s`,
    );
    assert(before.mean_nll > 4.5 && before.mean_nll < 5.2, `untuned NLL ${before.mean_nll}`);
    assert(
      after.mean_nll <= before.mean_nll - 1.0,
      `held-out NLL fell only from ${before.mean_nll} to ${after.mean_nll}`,
    );
  } finally {
    model.free();
  }
});
