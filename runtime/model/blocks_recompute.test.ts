import { assert, assertEquals } from "../../tests/util.ts";
import { LlamaBlocks } from "./blocks.ts";
import { kernelsWith, loadStories, randomLora } from "./testing.ts";

const stories = loadStories();
const c = stories.config;

function wave(n: number, f: number, s: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + s) * scale);
}

/** Every module's dA, dB, concatenated in module order. */
function allGrads(lora: ReturnType<typeof randomLora>): number[] {
  const out: number[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    for (const p of ["q", "k", "v", "o", "gate", "up", "down"] as const) {
      const { dA, dB } = lora.grads(l, p);
      out.push(...dA, ...dB);
    }
  }
  return out;
}

Deno.test("recomputeAttention: bitwise the same hL, ∂L/∂h0 and LoRA grads as saving att", async () => {
  for (const threads of [1, 2]) {
    const k = await kernelsWith(threads);
    const runs = [true, false].map((recomputeAttention) => ({
      blocks: new LlamaBlocks(k, c, stories.layers, { recomputeAttention }),
      lora: randomLora(k, c, {}, 7),
    }));
    for (const shape of [{ B: 2, T: 7 }, { B: 1, T: 1 }, { B: 3, T: 17 }]) {
      const n = shape.B * shape.T * c.dim;
      const h0 = wave(n, 0.37, shape.T), dhL = wave(n, 0.11, shape.B, 1e-2);
      const got = [];
      for (const { blocks, lora } of runs) {
        lora.zeroGrad();
        // Two passes: the second reuses the workspace and its shared attention buffer.
        let dh0: number[] = [];
        for (let pass = 0; pass < 2; pass++) {
          await blocks.forward(h0, shape, lora);
          dh0 = [...(await blocks.backward(dhL, lora)).data];
        }
        const hL = [...(await blocks.forward(h0, shape, lora)).data];
        got.push({ hL, dh0, grads: allGrads(lora) });
      }
      const msg = `threads ${threads}, ${shape.B}×${shape.T}`;
      assertEquals(got[0].hL, got[1].hL, `${msg}: hL`);
      assertEquals(got[0].dh0, got[1].dh0, `${msg}: dh0`);
      assertEquals(got[0].grads, got[1].grads, `${msg}: LoRA grads`);
      assert(got[0].grads.some((g) => g !== 0), `${msg}: the grads are not all zero`);
    }
    for (const { blocks, lora } of runs) {
      blocks.free();
      lora.free();
    }
  }
});

Deno.test("recomputeAttention keeps one B·NH·T² attention buffer instead of one per layer", async () => {
  const k = await kernelsWith(1);
  const shape = { B: 2, T: 32 };
  const h0 = wave(shape.B * shape.T * c.dim, 0.21, 1);
  // A first forward makes the kernels' one-time allocations (e.g. GEMM packing scratch).
  const warm = new LlamaBlocks(k, c, stories.layers);
  await warm.forward(h0, shape);
  warm.free();
  const used: number[] = [];
  for (const recomputeAttention of [true, false]) {
    const blocks = new LlamaBlocks(k, c, stories.layers, { recomputeAttention });
    const before = k.liveBytes;
    await blocks.forward(h0, shape);
    used.push(k.liveBytes - before);
    blocks.free();
  }
  const att = shape.B * c.nHeads * shape.T * shape.T * 4;
  assertEquals(used[1] - used[0], (c.nLayers - 1) * att);
});
