import {
  assert,
  assertClose,
  assertEquals,
  assertRejects,
  assertThrows,
} from "../../tests/util.ts";
import { loadGgufLlama, writeGguf } from "../formats/gguf_llama.ts";
import { loadHfDirectory, memoryFiles, writeHfDirectory } from "../formats/hf.ts";
import { parseLlama2c, writeLlama2c } from "../formats/llama2c.ts";
import { syntheticWeights } from "../formats/synthetic.ts";
import { loadWeights } from "../resolve.ts";
import { loadLlama2cTokenizer } from "../tokenizer/llama2c.ts";
import { LlamaModel } from "./llama.ts";
import { referenceForward } from "./reference.ts";
import {
  kernelsWith,
  loadOracle,
  loadStories,
  randomIds,
  randomLora,
  refLoraOf,
  TOK512,
} from "./testing.ts";
import type { LlamaWeights } from "./weights.ts";

const stories = loadStories();
const oracle = loadOracle();
const V = stories.config.vocabSize;

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length, "lengths");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("stories260K matches the oracle: token ids, logits at 0 and last, mean NLL", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const tok = loadLlama2cTokenizer(Deno.readFileSync(TOK512), V, "tok512.bin");
  for (const c of oracle.cases) {
    const ids = tok.encode(c.text);
    assertEquals(ids, c.ids, JSON.stringify(c.text));
    const T = ids.length;
    const logits = await model.logits(ids, { B: 1, T });
    const msg = JSON.stringify(c.text);
    assertClose(logits.subarray(0, 8), c.logits_pos0_first8, { atol: 1e-4, rtol: 0, msg });
    const last = logits.subarray((T - 1) * V, (T - 1) * V + 8);
    assertClose(last, c.logits_last_first8, { atol: 1e-4, rtol: 0, msg });
    const lastOnly = await model.logits(ids, { B: 1, T }, { positions: "last" });
    assertClose(lastOnly.subarray(0, 8), c.logits_last_first8, { atol: 1e-4, rtol: 0, msg });
    const r = await model.forwardLoss(ids.slice(0, -1), ids.slice(1), { B: 1, T: T - 1 });
    assertEquals(r.count, T - 1);
    assertClose([r.mean], [c.mean_nll_nats], { atol: 1e-4, rtol: 0, msg });
  }
  model.free();
});

Deno.test("the model gives the same logits through llama2.c, HF, GGUF and the resolver", async () => {
  const k = await kernelsWith(1);
  const ids = oracle.cases[0].ids, shape = { B: 1, T: ids.length };
  const sources: [string, () => Promise<LlamaWeights> | LlamaWeights][] = [
    ["llama2.c round trip", () => parseLlama2c(writeLlama2c(stories), "rt.bin")],
    ["HF directory", () => loadHfDirectory(memoryFiles(writeHfDirectory(stories), "hf"))],
    ["GGUF", () => loadGgufLlama(writeGguf(stories), "s.gguf")],
    ["loadWeights(stories260K)", () => loadWeights("stories260K", { download: false })],
  ];
  const base = new LlamaModel(k, stories);
  const want = await base.logits(ids, shape);
  base.free();
  for (const [name, load] of sources) {
    const model = new LlamaModel(k, await load());
    const got = await model.logits(ids, shape);
    const d = maxDiff(got, want);
    assert(d <= 1e-5, `${name}: logits differ by ${d}`);
    model.free();
  }
});

Deno.test("engine agrees with the float64 reference: untied head, GQA, batches, LoRA", async () => {
  const k = await kernelsWith(1);
  const tiny = syntheticWeights(
    { ...syntheticWeights("tiny").config, tiedEmbeddings: false },
    4,
    0.1,
  );
  const model = new LlamaModel(k, tiny);
  const lora = randomLora(k, tiny.config, { rank: 3, alpha: 6 }, 2, 0.3);
  const B = 3, T = 7, Vt = tiny.config.vocabSize;
  const ids = randomIds(B * T, Vt, 8), targets = randomIds(B * T, Vt, 9);
  targets[5] = -1;
  const ref = referenceForward(tiny, ids, targets, B, T, refLoraOf(lora));
  const logits = await model.logits(ids, { B, T }, { hooks: lora });
  assertClose(logits, ref.logits, { atol: 1e-5, rtol: 1e-5 });
  const r = await model.forwardLoss(ids, targets, { B, T }, { hooks: lora });
  assertEquals(r.count, B * T - 1);
  assertClose(r.losses, ref.losses, { atol: 1e-5, rtol: 1e-5 });
  assertClose([r.mean], [ref.mean], { atol: 1e-6, rtol: 1e-6 });
  // Each sequence alone gives its rows of the batch.
  for (let b = 0; b < B; b++) {
    const one = await model.logits(ids.slice(b * T, (b + 1) * T), { B: 1, T }, { hooks: lora });
    assertClose(one, logits.subarray(b * T * Vt, (b + 1) * T * Vt), { atol: 1e-6, rtol: 1e-6 });
  }
  // "last" is the last row of every sequence.
  const last = await model.logits(ids, { B, T }, { hooks: lora, positions: "last" });
  for (let b = 0; b < B; b++) {
    const row = ((b + 1) * T - 1) * Vt;
    assertClose(last.subarray(b * Vt, (b + 1) * Vt), logits.subarray(row, row + Vt), {
      atol: 1e-6,
      rtol: 0,
    });
  }
  model.free();
  lora.free();
});

Deno.test("fused and separate projections compute the same step", async () => {
  const k = await kernelsWith(1);
  const results = [];
  for (const fuse of [true, false]) {
    const model = new LlamaModel(k, stories, { fuse });
    const lora = randomLora(k, stories.config, { rank: 4, alpha: 8 });
    const ids = randomIds(2 * 16, V, 3), targets = randomIds(2 * 16, V, 4);
    const r = await model.trainStep({ ids, targets, B: 2, T: 16 }, lora, { lr: 1e-3 });
    results.push({ loss: r.loss, grads: lora.grads(2, "k"), gu: lora.grads(1, "up") });
    model.free();
    lora.free();
  }
  assertClose([results[1].loss], [results[0].loss], { atol: 1e-6, rtol: 0 });
  for (const key of ["grads", "gu"] as const) {
    assertClose(results[1][key].dA, results[0][key].dA, { atol: 1e-7, rtol: 1e-5 });
    assertClose(results[1][key].dB, results[0][key].dB, { atol: 1e-7, rtol: 1e-5 });
  }
});

Deno.test("logits are the same with 1 and 2 threads", async () => {
  const ids = randomIds(4 * 64, V, 12), shape = { B: 4, T: 64 };
  const out = [];
  for (const threads of [1, 2]) {
    const model = new LlamaModel(await kernelsWith(threads), stories);
    out.push(await model.logits(ids, shape));
    model.free();
  }
  const d = maxDiff(out[0], out[1]);
  assert(d <= 1e-5, `threads 1 vs 2 differ by ${d}`);
});

Deno.test("split parts: Float32Array hand-offs equal the composed path; misuse is explained", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const lora = randomLora(k, stories.config);
  const shape = { B: 2, T: 5 }, ids = randomIds(10, V, 1), targets = randomIds(10, V, 2);
  // As the split moves them: plain arrays across the wire.
  const h0 = model.embed(ids, shape).toArray();
  const hL = (await model.blocksForward(h0, shape, lora)).toArray();
  const loss = model.headForward(hL, targets, shape);
  const dhL = model.headBackward().toArray();
  const dh0 = (await model.blocksBackward(dhL, lora)).toArray();
  const gradsSplit = lora.grads(3, "v");
  lora.zeroGrad();
  const composed = await model.forwardLoss(ids, targets, shape, { hooks: lora, grad: true });
  const dh0b = (await model.backward(lora)).toArray();
  assertEquals(loss.mean, composed.mean);
  assertEquals(Array.from(dh0), Array.from(dh0b));
  assertEquals(Array.from(lora.grads(3, "v").dA), Array.from(gradsSplit.dA));

  await assertRejects(() => model.blocksBackward(dhL, lora), /no forward to go back through/);
  assertThrows(() => model.headBackward(), /no headForward with grad/);
  assertThrows(() => model.embed([1, 2, 3], shape), /3 ids for a batch of B·T = 2·5 = 10/);
  assertThrows(() => model.embed(new Array(10).fill(600), shape), /outside the vocabulary/);
  await assertRejects(
    () => model.blocksForward(new Float32Array(7), shape),
    /h0 has 7 values, expected B·T·D = 640/,
  );
  await model.blocksForward(h0, shape, lora);
  await assertRejects(() => model.blocksBackward(dhL), /pass the same hooks/);
  assertThrows(
    () => model.headForward(hL, new Array(10).fill(999), shape),
    /outside the vocabulary/,
  );
  assertThrows(
    () => new LlamaModel(k, { ...stories, layers: stories.layers.slice(1) }),
    /4 layers given/,
  );
  model.free();
  lora.free();
});

Deno.test("steady state: training steps allocate no wasm memory; overlapping passes are refused", async () => {
  const k = await kernelsWith(2);
  const model = new LlamaModel(k, stories);
  const lora = randomLora(k, stories.config, { rank: 8, alpha: 16 });
  const b = { ids: randomIds(4 * 32, V, 1), targets: randomIds(4 * 32, V, 2), B: 4, T: 32 };
  await model.trainStep(b, lora, { lr: 1e-3 });
  const live = k.liveBytes, size = k.memory.buffer.byteLength;
  for (let s = 0; s < 3; s++) await model.trainStep(b, lora, { lr: 1e-3 });
  assertEquals(k.liveBytes, live);
  assertEquals(k.memory.buffer.byteLength, size);
  // A second pass while the first awaits its hooks would clobber shared buffers.
  const shape = { B: 4, T: 32 }, h0 = model.embed(b.ids, shape).toArray();
  const slow = {
    isActive: () => true,
    forward: () => new Promise<void>((resolve) => setTimeout(resolve, 5)),
    backward: () => {},
  };
  const first = model.blocksForward(h0, shape, slow);
  await assertRejects(() => model.blocksForward(h0, shape), /a forward is still running/);
  await first;
  model.free();
  lora.free();
});

Deno.test("a pending head backward survives other shapes passing through the ends", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const shape = { B: 1, T: 6 }, ids = randomIds(6, V, 1), targets = randomIds(6, V, 2);
  const hL = (await model.blocksForward(model.embed(ids, shape), shape)).toArray();
  model.headForward(hL, targets, shape);
  const want = model.headBackward().toArray();
  model.headForward(hL, targets, shape);
  for (const T of [1, 2, 3, 4, 5]) model.embed(randomIds(T, V, T), { B: 1, T });
  assertEquals(Array.from(model.headBackward().toArray()), Array.from(want));
  model.free();
});
