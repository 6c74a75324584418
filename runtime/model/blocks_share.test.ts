import { assert, assertEquals, assertRejects } from "../../tests/util.ts";
import type { F32 } from "../../kernels/mod.ts";
import type { LoraHooks, ProjGrad, ProjOutput } from "./hooks.ts";
import { LlamaBlocks } from "./blocks.ts";
import { kernelsWith, loadStories, randomLora } from "./testing.ts";

const stories = loadStories();

/** LoRA hooks that wait a tick at every group, so two passes interleave. */
function slowed(inner: LoraHooks): LoraHooks {
  const tick = () => new Promise((r) => setTimeout(r, 0));
  return {
    isActive: (l, p) => inner.isActive(l, p),
    async forward(l: number, X: F32, outputs: readonly ProjOutput[]) {
      await tick();
      await inner.forward(l, X, outputs);
    },
    async backward(l: number, grads: readonly ProjGrad[], dX: F32 | null) {
      await tick();
      await inner.backward(l, grads, dX);
    },
  };
}

Deno.test("LlamaBlocks.share: same weights, own activations, passes in flight at once", async () => {
  const k = await kernelsWith(1);
  const owner = new LlamaBlocks(k, stories.config, stories.layers);
  const D = stories.config.dim;
  const inputs = [1, 2].map((s) =>
    Float32Array.from({ length: 2 * 5 * D }, (_, i) => Math.sin(i * 0.37 + s))
  );
  const grads = [3, 4].map((s) =>
    Float32Array.from({ length: 2 * 5 * D }, (_, i) => Math.cos(i * 0.11 + s) * 1e-2)
  );
  const loras = [randomLora(k, stories.config, {}, 1), randomLora(k, stories.config, {}, 2)];

  // Alone, one after the other, on the owner.
  const expected: { hL: Float32Array; dh0: Float32Array }[] = [];
  for (let i = 0; i < 2; i++) {
    const hL = (await owner.forward(inputs[i], { B: 2, T: 5 }, loras[i])).toArray();
    const dh0 = (await owner.backward(grads[i], loras[i])).toArray();
    expected.push({ hL, dh0 });
  }
  // The owner refuses a second pass while one awaits its hooks; shared instances do not.
  const first = owner.forward(inputs[0], { B: 2, T: 5 }, slowed(loras[0]));
  await assertRejects(() => owner.forward(inputs[1], { B: 2, T: 5 }), /still running/);
  await first;

  const shared = [owner.share(), owner.share()];
  const got = await Promise.all(shared.map(async (b, i) => {
    const hL = (await b.forward(inputs[i], { B: 2, T: 5 }, slowed(loras[i]))).toArray();
    const dh0 = (await b.backward(grads[i], slowed(loras[i]))).toArray();
    return { hL, dh0 };
  }));
  for (let i = 0; i < 2; i++) {
    assertEquals([...got[i].hL], [...expected[i].hL], `session ${i} hL`);
    assertEquals([...got[i].dh0], [...expected[i].dh0], `session ${i} dh0`);
  }
  // Freeing a shared instance leaves the weights to the owner.
  const live = k.liveBytes;
  shared[0].free();
  assert(k.liveBytes < live, "the shared instance's activations were freed");
  const again = (await owner.forward(inputs[1], { B: 2, T: 5 }, loras[1])).toArray();
  assertEquals([...again], [...expected[1].hL]);
  shared[1].free();
  owner.free();
  for (const l of loras) l.free();
});
