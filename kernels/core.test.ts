import { Kernels } from "./mod.ts";
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "../tests/util.ts";

Deno.test("loader picks relaxed SIMD here, falls back to plain SIMD on request", async () => {
  const k = await Kernels.load();
  assertEquals(k.variant, "relaxed");
  assertEquals(k.exports.hasRelaxedSimd(), 1);
  const p = await Kernels.load({ noRelaxed: true });
  assertEquals(p.variant, "simd");
  assertEquals(p.exports.hasRelaxedSimd(), 0);
});

Deno.test("wasm arrays survive memory growth without copies by the caller", async () => {
  const k = await Kernels.load();
  const x = k.from([1, 2, 3]);
  const before = k.memory.buffer.byteLength;
  const big = k.alloc(before); // forces growth (4 bytes per element)
  assert(k.memory.buffer.byteLength > before, "memory grew");
  assertClose(x.data, [1, 2, 3]);
  big.free();
  x.free();
  assertThrows(() => x.data, /freed/);
  assertEquals(k.liveBytes, 0);
});

Deno.test("threaded build splits a job over workers", async () => {
  const k = await Kernels.load({ threads: 2 });
  try {
    assertEquals(k.variant, "relaxed-mt");
    assertEquals(k.threads, 2);
    const y = k.alloc(1000);
    k.parallel("fill", [[y.ptr, 1, 500], [y.ptr + 2000, 2, 500]]);
    assertEquals(y.data[0], 1);
    assertEquals(y.data[999], 2);
  } finally {
    k.close();
  }
});

Deno.test("missing builds give an actionable error", async () => {
  await assertRejects(
    () => Kernels.load({ sources: () => Promise.reject(new Error("nope")) }),
    /npm run build/,
  );
});
