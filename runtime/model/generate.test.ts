import {
  assert,
  assertClose,
  assertEquals,
  assertRejects,
  assertThrows,
} from "../../tests/util.ts";
import { argmax, generate, Sampler } from "./generate.ts";
import { LlamaModel } from "./llama.ts";
import { kernelsWith, loadOracle, loadStories, randomIds, randomLora } from "./testing.ts";

const stories = loadStories();
const oracle = loadOracle();
const V = stories.config.vocabSize;

Deno.test("greedy: 60 tokens from BOS equal the oracle exactly", async () => {
  const model = new LlamaModel(await kernelsWith(1), stories);
  const streamed: number[] = [];
  const r = await generate(model, [1], { maxTokens: 60, onToken: (id) => streamed.push(id) });
  assertEquals(r.ids, oracle.greedy_60_from_bos_ids);
  assertEquals(r.generated, streamed);
  assertEquals(r.stopReason, "length");
  model.free();
});

Deno.test("KV-cache decoding with LoRA gives the full forward's logits at every position", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const lora = randomLora(k, stories.config, { rank: 4, alpha: 8 }, 5, 0.2);
  const ids = randomIds(12, V, 3), P = 5;
  const full = await model.logits(ids, { B: 1, T: ids.length }, { hooks: lora });
  const cache = model.blocks.createCache(1, ids.length);
  const prompt = { B: 1, T: P };
  let hL = await model.blocks.prefill(model.embed(ids.slice(0, P), prompt), prompt, cache, lora);
  const check = (pos: number, logits: Float32Array) =>
    assertClose(logits, full.subarray(pos * V, (pos + 1) * V), {
      atol: 2e-5,
      rtol: 1e-5,
      msg: `position ${pos}`,
    });
  check(P - 1, model.ends.logits(hL, prompt, "last").toArray());
  const one = { B: 1, T: 1 };
  for (let pos = P; pos < ids.length; pos++) {
    hL = await model.blocks.decode(model.embed([ids[pos]], one), pos, cache, lora);
    check(pos, model.ends.logits(hL, one, "last").toArray());
  }
  await assertRejects(
    () => model.blocks.decode(model.embed([1], one), ids.length, cache),
    /position 12 is outside the cache's 0\.\.11/,
  );
  cache.free();
  // generate() with hooks follows the adapted model's argmax.
  const g = await generate(model, ids.slice(0, P), { maxTokens: 6, hooks: lora });
  const again = await model.logits(g.ids.slice(0, -1), { B: 1, T: g.ids.length - 1 }, {
    hooks: lora,
  });
  for (let pos = P - 1; pos < g.ids.length - 1; pos++) {
    assertEquals(argmax(again.subarray(pos * V, (pos + 1) * V)), g.ids[pos + 1], `pos ${pos}`);
  }
  model.free();
  lora.free();
});

Deno.test("sampling: seeded, temperature and top-p behave", async () => {
  const model = new LlamaModel(await kernelsWith(1), stories);
  const opts = { maxTokens: 20, temperature: 1, topP: 0.9, seed: 7 };
  const a = await generate(model, [1], opts), b = await generate(model, [1], opts);
  assertEquals(a.ids, b.ids);
  const c = await generate(model, [1], { ...opts, seed: 8, temperature: 1.5, topP: 1 });
  assert(c.ids.join() !== a.ids.join(), "another seed and temperature gave the same text");
  // A nucleus this small keeps only the most likely token: greedy.
  const tight = await generate(model, [1], { maxTokens: 20, temperature: 1, topP: 1e-6 });
  assertEquals(tight.ids, oracle.greedy_60_from_bos_ids.slice(0, 21));
  // stop ids and the context limit.
  const stop = await generate(model, [1], { maxTokens: 60, stopIds: [426] });
  assertEquals(stop.stopReason, "stop");
  assertEquals(stop.ids, oracle.greedy_60_from_bos_ids.slice(0, 16));
  const short = new LlamaModel(model.k, { ...stories, config: { ...stories.config, seqLen: 8 } });
  const ctx = await generate(short, [1, 403], { maxTokens: 50 });
  assertEquals(ctx.stopReason, "context");
  assertEquals(ctx.ids.length, 9);
  await assertRejects(() => generate(model, [], { maxTokens: 3 }), /at least one token/);
  await assertRejects(() => generate(model, [512], { maxTokens: 3 }), /outside the vocabulary/);
  short.free();
  model.free();
});

Deno.test("Sampler draws from softmax(logits/temperature) and its nucleus", () => {
  const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
  const count = (s: Sampler, n: number) => {
    const c = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) c[s.sample(logits)]++;
    return c.map((x) => x / n);
  };
  const free = count(new Sampler({ temperature: 1, seed: 1 }), 20000);
  assertClose(free, [0.5, 0.3, 0.15, 0.05], { atol: 0.015, rtol: 0 });
  // top-p 0.7: {0.5, 0.3} (mass 0.8 > 0.7), renormalised.
  const nucleus = count(new Sampler({ temperature: 1, topP: 0.7, seed: 2 }), 20000);
  assertClose(nucleus, [0.625, 0.375, 0, 0], { atol: 0.015, rtol: 0 });
  assertEquals(new Sampler().sample([1, 3, 3, 2]), 1);
  assertThrows(() => new Sampler({ topP: 0 }), /topP must lie in \(0, 1\]/);
  assertThrows(() => new Sampler({ temperature: -1 }), /temperature must be ≥ 0/);
});
