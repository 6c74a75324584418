import { assertEquals } from "../../tests/util.ts";
import type { F32 } from "../../kernels/mod.ts";
import type { LoraHooks, ProjGrad, ProjOutput } from "./hooks.ts";
import { LlamaBlocks } from "./blocks.ts";
import type { Proj } from "./modules.ts";
import { kernelsWith, loadStories, randomLora } from "./testing.ts";

const stories = loadStories();

/** Passes through to `inner`, noting each backward call as "layer.group" and whether dX came. */
function recording(inner: LoraHooks, calls: string[]): LoraHooks {
  return {
    isActive: (l, p) => inner.isActive(l, p),
    forward: (l: number, X: F32, outputs: readonly ProjOutput[]) => inner.forward(l, X, outputs),
    backward(l: number, grads: readonly ProjGrad[], dX: F32 | null) {
      calls.push(`${l}.${grads.map((g) => g.proj).join("+")}${dX === null ? " no-dX" : ""}`);
      return inner.backward(l, grads, dX);
    },
  };
}

// Each case: the active modules and the backward calls expected when ∂h0 is not wanted.
const CASES: { active: string[]; calls: string[] }[] = [
  // The first active group is layer 2's gate/up: layers 0–1 and layer 2's attention never run.
  {
    active: ["2.up", "2.down", "3.q", "4.gate"],
    calls: ["4.gate", "3.q", "2.down", "2.up no-dX"],
  },
  { active: ["1.o", "1.v", "3.down"], calls: ["3.down", "1.o", "1.v no-dX"] },
  { active: ["3.down"], calls: ["3.down no-dX"] },
  { active: ["0.o", "4.k"], calls: ["4.k", "0.o no-dX"] },
];

Deno.test("LlamaBlocks.backward without ∂h0 stops at the first active module, same gradients", async () => {
  const k = await kernelsWith(1);
  const blocks = new LlamaBlocks(k, stories.config, stories.layers);
  const D = stories.config.dim, shape = { B: 2, T: 6 };
  const h0 = Float32Array.from({ length: 2 * 6 * D }, (_, i) => Math.sin(i * 0.29));
  const dhL = Float32Array.from({ length: 2 * 6 * D }, (_, i) => Math.cos(i * 0.13) * 1e-2);
  try {
    for (const { active, calls } of CASES) {
      const lora = randomLora(k, stories.config, {}, 5);
      try {
        lora.setActiveKeys(active);
        // The whole backward, ∂h0 included.
        lora.zeroGrad();
        await blocks.forward(h0, shape, lora);
        await blocks.backward(dhL, lora);
        const full = new Map(active.map((m) => [m, gradsOf(lora, m)]));
        // Stopping at the first active module: the same gradients, fewer calls.
        lora.zeroGrad();
        await blocks.forward(h0, shape, lora);
        const seen: string[] = [];
        assertEquals(await blocks.backward(dhL, recording(lora, seen), { inputGrad: false }), null);
        assertEquals(seen, calls, `backward calls with ${active}`);
        for (const m of active) assertEquals(gradsOf(lora, m), full.get(m), `gradients of ${m}`);
      } finally {
        lora.free();
      }
    }
    // Nothing active: nothing to go back through.
    const lora = randomLora(k, stories.config, {}, 6);
    lora.setActiveKeys([]);
    await blocks.forward(h0, shape, lora);
    const seen: string[] = [];
    assertEquals(await blocks.backward(dhL, recording(lora, seen), { inputGrad: false }), null);
    assertEquals(seen, []);
    lora.free();
  } finally {
    blocks.free();
  }
});

function gradsOf(lora: ReturnType<typeof randomLora>, key: string): number[] {
  const [l, p] = key.split(".");
  const { dA, dB } = lora.grads(Number(l), p as Proj);
  return [...dA, ...dB];
}
