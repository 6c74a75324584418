import { assert, assertClose, assertEquals } from "../../tests/util.ts";
import { evalWindows } from "../data/windows.ts";
import { loadModel } from "../load.ts";
import { LlamaModel } from "../model/llama.ts";
import { referenceForward } from "../model/reference.ts";
import { kernelsWith, loadOracle, randomLora, refLoraOf } from "../model/testing.ts";
import { heldOutNll, nllOfIds } from "./nll.ts";

const { weights, tokenizer } = await loadModel("stories260K");
const TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside " +
  "in the park. One day, she saw a big red ball.\nShe ran to it and kicked it very high!";

/** §7 computed directly: each window alone through the float64 reference, NLL summed. */
function directNll(ids: number[], T: number, lora?: ReturnType<typeof refLoraOf>) {
  let sum = 0, count = 0;
  for (const w of evalWindows(ids, T)) {
    const n = w.length - 1;
    const r = referenceForward(weights, w.subarray(0, n), w.subarray(1), 1, n, lora);
    for (let i = 0; i < n; i++) sum += r.losses[i];
    count += n;
  }
  return { tokens: count, mean_nll: sum / count };
}

Deno.test("held-out NLL: batched, padded windows equal each window alone (reference)", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, weights);
  try {
    const ids = tokenizer!.encode(TEXT, { bos: true });
    const T = 16; // several full windows and a partial last one
    assert(ids.length > 3 * T && (ids.length - 1) % T !== 0, `${ids.length} tokens`);
    const want = directNll(ids, T);
    assertEquals(want.tokens, ids.length - 1);
    for (const windowsPerBatch of [1, 2, 3, undefined]) {
      const got = await heldOutNll(model, tokenizer!, TEXT, T, { windowsPerBatch });
      assertEquals(got.tokens, want.tokens);
      assertClose([got.mean_nll], [want.mean_nll], {
        rtol: 1e-5,
        msg: `${windowsPerBatch ?? "default"} windows per batch`,
      });
    }
    // maxTokens keeps the first tokens only: the same as evaluating those ids.
    const head = await heldOutNll(model, tokenizer!, TEXT, T, { maxTokens: 20 });
    const headIds = await nllOfIds(model, ids.slice(0, 20), T);
    assertEquals(head, headIds);
    assertEquals(head.tokens, 19);
  } finally {
    model.free();
  }
});

Deno.test("held-out NLL: the oracle's per-text NLL, and LoRA hooks are applied", async () => {
  const k = await kernelsWith(2);
  const model = new LlamaModel(k, weights);
  const lora = randomLora(k, weights.config, { dropout: 0.2 }, 3, 0.2);
  try {
    for (const c of loadOracle().cases) {
      if (c.ids.length < 2) continue;
      const got = await heldOutNll(model, tokenizer!, c.text, 256);
      assertEquals(got.tokens, c.ids.length - 1);
      assertClose([got.mean_nll], [c.mean_nll_nats], { rtol: 1e-5, msg: c.text });
    }
    const ids = tokenizer!.encode(TEXT, { bos: true });
    const base = await heldOutNll(model, tokenizer!, TEXT, 32);
    const withLora = await heldOutNll(model, tokenizer!, TEXT, 32, { hooks: lora });
    // Dropout is off while evaluating, and the LocalLora is left in training mode afterwards.
    assertEquals(lora.training, true);
    const want = directNll(ids, 32, refLoraOf(lora));
    assertClose([withLora.mean_nll], [want.mean_nll], { rtol: 1e-5 });
    assert(Math.abs(withLora.mean_nll - base.mean_nll) > 1e-3, "the adapter changes the NLL");
    const empty = await heldOutNll(model, tokenizer!, "", 32, { maxTokens: 1 });
    assertEquals(empty.tokens, 0);
    assert(Number.isNaN(empty.mean_nll), "no predicted token: NaN");
  } finally {
    lora.free();
    model.free();
  }
});
