import { assert, assertClose, assertEquals, assertThrows, rng } from "../../tests/util.ts";
import { syntheticWeights } from "../formats/synthetic.ts";
import type { LoraHooks, ProjGrad, ProjOutput } from "./hooks.ts";
import { LlamaModel } from "./llama.ts";
import { LocalLora } from "./lora.ts";
import { moduleKey, type Proj, PROJS } from "./modules.ts";
import { referenceForward, type RefLora } from "./reference.ts";
import { kernelsWith, loadStories, randomIds, randomLora, refLoraOf } from "./testing.ts";
import type { F32 } from "../../kernels/mod.ts";

const stories = loadStories();
const V = stories.config.vocabSize;

/** A short batch: 2 sequences × 6 positions, one ignored target. */
function batch(seed: number, B = 2, T = 6) {
  const ids = randomIds(B * T, V, seed), targets = randomIds(B * T, V, seed + 1);
  targets[3] = -1;
  return { ids, targets, B, T };
}

/** Mean loss of the float64 reference with module `key`'s A or B entry i moved by d. */
function refLossWith(
  ref: RefLora,
  b: ReturnType<typeof batch>,
  key: string,
  which: "A" | "B",
  i: number,
  d: number,
): number {
  const m = ref.modules.get(key)!;
  const arr = m[which] as Float64Array, old = arr[i];
  arr[i] = old + d;
  const out = referenceForward(stories, b.ids, b.targets, b.B, b.T, ref).mean;
  arr[i] = old;
  return out;
}

/** Central difference of the reference loss, h in float64. */
function fdLora(
  ref: RefLora,
  b: ReturnType<typeof batch>,
  key: string,
  which: "A" | "B",
  i: number,
) {
  const h = 1e-4;
  return (refLossWith(ref, b, key, which, i, h) - refLossWith(ref, b, key, which, i, -h)) / (2 * h);
}

/** Gradient agreement: |got − want| ≤ 1e-3·scale + 1e-2·|want|, scale = largest |gradient|. */
function assertGrad(got: number, want: number, scale: number, what: string) {
  const err = Math.abs(got - want);
  assert(
    err <= 1e-3 * scale + 1e-2 * Math.abs(want),
    `${what}: engine ${got}, finite difference ${want} (scale ${scale})`,
  );
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

Deno.test("LoRA gradients of q,k,v,o,gate,up,down match float64 finite differences (stories260K)", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const lora = randomLora(k, stories.config, { rank: 4, alpha: 8 });
  const b = batch(7);
  const r = await model.forwardLoss(b.ids, b.targets, b, { hooks: lora, grad: true });
  await model.backward(lora);
  const ref = refLoraOf(lora);
  const want = referenceForward(stories, b.ids, b.targets, b.B, b.T, ref).mean;
  assertClose([r.mean], [want], { atol: 1e-4, rtol: 0, msg: "loss" });
  const pick = rng(11);
  PROJS.forEach((proj, n) => {
    const layer = n % stories.config.nLayers, key = moduleKey(layer, proj);
    const { dA, dB } = lora.grads(layer, proj);
    for (const [which, g] of [["A", dA], ["B", dB]] as const) {
      const scale = maxAbs(g);
      assert(scale > 0, `${key}.${which} got no gradient`);
      // The largest entry and three random ones.
      const coords = [Array.from(g).findIndex((x) => Math.abs(x) === scale)];
      for (let j = 0; j < 3; j++) coords.push(Math.floor(pick() * g.length));
      for (const i of coords) {
        assertGrad(g[i], fdLora(ref, b, key, which, i), scale, `${key}.d${which}[${i}]`);
      }
    }
  });
  model.free();
  lora.free();
});

Deno.test("dX through the blocks (∂L/∂h0, LoRA included) matches float64 finite differences", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const lora = randomLora(k, stories.config, { rank: 4, alpha: 16 }, 3, 0.2);
  const b = batch(21);
  const shape = { B: b.B, T: b.T };
  const h0 = model.embed(b.ids, shape).toArray();
  const hL = await model.blocksForward(h0, shape, lora);
  model.headForward(hL, b.targets, shape);
  const dh0 = (await model.blocksBackward(model.headBackward(), lora)).toArray();
  const ref = refLoraOf(lora);
  const base = Float64Array.from(h0);
  const loss = (i: number, d: number) => {
    const old = base[i];
    base[i] = old + d;
    const out = referenceForward(stories, b.ids, b.targets, b.B, b.T, ref, base).mean;
    base[i] = old;
    return out;
  };
  const scale = maxAbs(dh0), pick = rng(5), h = 1e-4;
  for (let j = 0; j < 12; j++) {
    const i = Math.floor(pick() * dh0.length);
    assertGrad(dh0[i], (loss(i, h) - loss(i, -h)) / (2 * h), scale, `dh0[${i}]`);
  }
  model.free();
  lora.free();
});

Deno.test("LoRA dropout: masks kept for backward match the reference; eval mode is dropout-free", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const p = 0.3;
  const lora = randomLora(k, stories.config, { rank: 4, alpha: 8, dropout: p, dropoutSeed: 9 });
  const b = batch(31);
  lora.seedDropout(9);
  const first = await model.forwardLoss(b.ids, b.targets, b, { hooks: lora, grad: true });
  await model.backward(lora);
  // Reference with the very masks the engine drew.
  const ref = refLoraOf(lora);
  for (const [key, m] of ref.modules) {
    const [layer, proj] = key.split(".");
    const mask = lora.dropoutMask(Number(layer), proj as Proj);
    assert(mask !== null, `${key} has no mask`);
    let dropped = 0;
    for (const x of mask) dropped += 1 - x;
    assert(
      dropped > 0.15 * mask.length && dropped < 0.45 * mask.length,
      `${key}: ${dropped} dropped`,
    );
    m.mask = mask;
    m.dropout = p;
  }
  const want = referenceForward(stories, b.ids, b.targets, b.B, b.T, ref).mean;
  assertClose([first.mean], [want], { atol: 1e-4, rtol: 0 });
  for (const proj of ["v", "up", "down"] as const) {
    const layer = 2, key = moduleKey(layer, proj);
    const { dA, dB } = lora.grads(layer, proj);
    for (const [which, g] of [["A", dA], ["B", dB]] as const) {
      const i = Array.from(g).findIndex((x) => Math.abs(x) === maxAbs(g));
      assertGrad(g[i], fdLora(ref, b, key, which, i), maxAbs(g), `${key}.d${which}[${i}]`);
    }
  }
  // Same seed → same masks → same loss; another seed differs.
  lora.seedDropout(9);
  const again = await model.forwardLoss(b.ids, b.targets, b, { hooks: lora });
  assertEquals(again.mean, first.mean);
  lora.seedDropout(10);
  assert((await model.forwardLoss(b.ids, b.targets, b, { hooks: lora })).mean !== first.mean);
  // Eval mode: no dropout at all.
  lora.training = false;
  const evalLoss = await model.forwardLoss(b.ids, b.targets, b, { hooks: lora });
  const noDrop = referenceForward(stories, b.ids, b.targets, b.B, b.T, refLoraOf(lora)).mean;
  assertClose([evalLoss.mean], [noDrop], { atol: 1e-4, rtol: 0 });
  model.free();
  lora.free();
});

Deno.test("killed modules get no gradient and no update; revived ones resume with their moments", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const lora = randomLora(k, stories.config, { rank: 4, alpha: 8 });
  const b = batch(41);
  const opt = { lr: 1e-2, weightDecay: 0.1 };
  await model.trainStep(b, lora, opt);
  const killed: [number, Proj][] = [[0, "q"], [2, "gate"], [4, "down"], [1, "o"]];
  for (const [l, p] of killed) lora.setActive(l, p, false);
  assertEquals(lora.activeKeys().length, lora.moduleKeys().length - killed.length);
  const before = lora.exportWeights("all");
  const moments = killed.map(([l, p]) => lora.optimizerState(l, p));
  const r = await model.trainStep(b, lora, opt);
  assert(Number.isFinite(r.loss) && r.gradNorm > 0);
  // The loss saw no contribution from the killed modules.
  const want = referenceForward(stories, b.ids, b.targets, b.B, b.T, {
    scale: lora.scale,
    modules: new Map(
      [...before].filter(([key]) => !killed.some(([l, p]) => moduleKey(l, p) === key)),
    ),
  }).mean;
  assertClose([r.loss], [want], { atol: 1e-4, rtol: 0 });
  const after = lora.exportWeights("all");
  killed.forEach(([l, p], i) => {
    const key = moduleKey(l, p), g = lora.grads(l, p), s = lora.optimizerState(l, p);
    assertEquals(maxAbs(g.dA) + maxAbs(g.dB), 0, `${key} gradient`);
    assertEquals(Array.from(after.get(key)!.A), Array.from(before.get(key)!.A), `${key} A`);
    assertEquals(Array.from(after.get(key)!.B), Array.from(before.get(key)!.B), `${key} B`);
    assertEquals(Array.from(s.m), Array.from(moments[i].m), `${key} m`);
    assertEquals(Array.from(s.v), Array.from(moments[i].v), `${key} v`);
    assertEquals(s.step, 1);
  });
  // An active module moved and counted its step.
  assert(after.get("0.k")!.A.some((x, i) => x !== before.get("0.k")!.A[i]));
  assertEquals(lora.optimizerState(0, "k").step, 2);
  // Revive: the module trains again from where it stopped.
  lora.setActiveKeys(lora.moduleKeys());
  await model.trainStep(b, lora, opt);
  assertEquals(lora.optimizerState(0, "q").step, 2);
  assert(lora.exportWeights("all").get("0.q")!.A.some((x, i) => x !== before.get("0.q")!.A[i]));
  model.free();
  lora.free();
});

/** Delegates to a LocalLora after awaiting a timer, as a remote device would. */
class DelayedHooks implements LoraHooks {
  constructor(readonly inner: LocalLora) {}
  isActive(layer: number, proj: Proj): boolean {
    return this.inner.isActive(layer, proj);
  }
  async forward(layer: number, X: F32, outputs: readonly ProjOutput[]): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.inner.forward(layer, X, outputs);
  }
  async backward(layer: number, grads: readonly ProjGrad[], dX: F32 | null): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    this.inner.backward(layer, grads, dX);
  }
}

Deno.test("async hooks (awaiting a timer) give results identical to sync ones", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const sync = randomLora(k, stories.config, { rank: 4, alpha: 8 });
  const lora = randomLora(k, stories.config, { rank: 4, alpha: 8 });
  const delayed = new DelayedHooks(lora);
  const b = batch(51);
  for (let step = 0; step < 2; step++) {
    const a = await model.trainStep(b, sync, { lr: 1e-2 });
    lora.zeroGrad();
    const r = await model.forwardLoss(b.ids, b.targets, b, { hooks: delayed, grad: true });
    await model.backward(delayed);
    const gradNorm = lora.gradNorm();
    lora.step({ lr: 1e-2 });
    assertEquals(r.mean, a.loss);
    assertEquals(gradNorm, a.gradNorm);
  }
  const x = sync.exportWeights("all"), y = lora.exportWeights("all");
  for (const [key, w] of x) {
    assertEquals(Array.from(y.get(key)!.A), Array.from(w.A), key);
    assertEquals(Array.from(y.get(key)!.B), Array.from(w.B), key);
  }
  model.free();
  sync.free();
  lora.free();
});

Deno.test("training is the same with 1 and 2 threads (within 1e-6)", async () => {
  const results = [];
  for (const threads of [1, 2]) {
    const k = await kernelsWith(threads);
    const model = new LlamaModel(k, stories);
    const lora = randomLora(k, stories.config, { rank: 8, alpha: 16 });
    // Big enough that GEMMs, LoRA and attention split over threads.
    const b = batch(61, 4, 64);
    const losses = [];
    for (let s = 0; s < 2; s++) losses.push((await model.trainStep(b, lora, { lr: 1e-3 })).loss);
    results.push({ losses, grads: lora.grads(3, "up"), weights: lora.exportWeights("all") });
    model.free();
    lora.free();
  }
  const [one, two] = results;
  assertClose(two.losses, one.losses, { atol: 1e-6, rtol: 0 });
  const gs = maxAbs(one.grads.dA);
  assertClose(two.grads.dA, one.grads.dA, { atol: 1e-6 * Math.max(gs, 1), rtol: 1e-5 });
  for (const [key, w] of one.weights) {
    assertClose(two.weights.get(key)!.A, w.A, { atol: 1e-6, rtol: 0, msg: key });
    assertClose(two.weights.get(key)!.B, w.B, { atol: 1e-6, rtol: 0, msg: key });
  }
});

Deno.test("micro-batches accumulate to the gradient of their concatenation", async () => {
  const k = await kernelsWith(1);
  const model = new LlamaModel(k, stories);
  const b1 = batch(71, 1, 6), b2 = batch(72, 1, 6);
  b2.targets[2] = -1;
  const whole = {
    ids: [...b1.ids, ...b2.ids],
    targets: [...b1.targets, ...b2.targets],
    B: 2,
    T: 6,
  };
  const x = randomLora(k, stories.config), y = randomLora(k, stories.config);
  const rx = await model.trainStep([b1, b2], x, { lr: 1e-3 });
  const ry = await model.trainStep(whole, y, { lr: 1e-3 });
  assertEquals(rx.count, ry.count);
  assertClose([rx.loss], [ry.loss], { atol: 1e-6, rtol: 0 });
  for (const proj of PROJS) {
    const gx = x.grads(1, proj), gy = y.grads(1, proj);
    assertClose(gx.dA, gy.dA, { atol: 1e-6, rtol: 1e-4, msg: proj });
    assertClose(gx.dB, gy.dB, { atol: 1e-6, rtol: 1e-4, msg: proj });
  }
  model.free();
  x.free();
  y.free();
});

Deno.test("init as PEFT: A ~ U(±1/√in) seeded, B = 0, so the adapted model starts as the base", async () => {
  const k = await kernelsWith(1);
  const c = stories.config;
  const lora = new LocalLora(k, c, { rank: 8, alpha: 16, seed: 3 });
  assertEquals(lora.scale, 2);
  assertEquals(lora.moduleKeys().length, 7 * c.nLayers);
  const w = lora.exportWeights("all");
  for (const [key, { A, B }] of w) {
    const inDim = key.endsWith(".down") ? c.hiddenDim : c.dim, bound = 1 / Math.sqrt(inDim);
    assertEquals(A.length, 8 * inDim);
    assert(
      maxAbs(A) <= bound && maxAbs(A) > 0.9 * bound,
      `${key}: max |A| ${maxAbs(A)} vs ${bound}`,
    );
    let mean = 0;
    for (const a of A) mean += a / A.length;
    assert(Math.abs(mean) < 0.2 * bound, `${key}: mean ${mean}`);
    assertEquals(maxAbs(B), 0, key);
  }
  const again = new LocalLora(k, c, { rank: 8, alpha: 16, seed: 3 }).exportWeights("all");
  assertEquals(Array.from(again.get("4.down")!.A), Array.from(w.get("4.down")!.A));
  const other = new LocalLora(k, c, { rank: 8, alpha: 16, seed: 4 }).exportWeights("all");
  assert(other.get("0.q")!.A[0] !== w.get("0.q")!.A[0]);
  const model = new LlamaModel(k, stories);
  const ids = randomIds(8, V, 1);
  const base = await model.logits(ids, { B: 1, T: 8 });
  assertEquals(
    Array.from(await model.logits(ids, { B: 1, T: 8 }, { hooks: lora })),
    Array.from(base),
  );
  model.free();
  lora.free();
});

Deno.test("targets, export/import and their errors", async () => {
  const k = await kernelsWith(1);
  const tiny = syntheticWeights("tiny", 2);
  const lora = new LocalLora(k, tiny.config, { rank: 2, alpha: 4, targets: ["v", "q"] });
  assertEquals(lora.targets, ["q", "v"]);
  assertEquals(lora.moduleKeys(), ["0.q", "0.v", "1.q", "1.v"]);
  assert(!lora.isActive(0, "k") && lora.isActive(1, "v"));
  lora.setActiveKeys(["1.v"]);
  assertEquals([...lora.exportWeights().keys()], ["1.v"]);
  const w = lora.exportWeights("all");
  w.get("0.q")!.B.fill(0.5);
  lora.importWeights(w);
  assertEquals(lora.exportWeights("all").get("0.q")!.B[3], 0.5);
  assertThrows(() => lora.importWeights({ "0.k": w.get("0.q")! }), /no module "0\.k"/);
  assertThrows(
    () => lora.importWeights({ "0.q": { A: new Float32Array(3), B: w.get("0.q")!.B } }),
    /0\.q\.A has 3 values, expected 2×32 = 64/,
  );
  assertThrows(() => lora.setActive(0, "gate", true), /no module for layer 0 gate/);
  assertThrows(() => lora.setActiveKeys(["9.q"]), /no module "9\.q"/);
  assertThrows(() => new LocalLora(k, tiny.config, { rank: 0, alpha: 1 }), /rank must be/);
  assertThrows(() => new LocalLora(k, tiny.config, { rank: 2, alpha: 1, dropout: 1 }), /dropout/);
  lora.free();
});
