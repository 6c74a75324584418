import { Gpu, probeAdapter, WebGpuUnavailableError } from "./device.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/util.ts";

const probe = await probeAdapter();
const ignore = !probe.ok;

Deno.test({
  name: "probe describes the adapter, including whether it is a software fallback",
  ignore,
  fn: () => {
    assert(probe.ok);
    assertEquals(typeof probe.info.isFallbackAdapter, "boolean");
    assertEquals(typeof probe.info.description, "string");
  },
});

Deno.test("no WebGPU is an answer, not an exception; opening then fails clearly", async () => {
  const none = await probeAdapter({ gpu: null });
  assertEquals(none.ok, false);
  assert(!none.ok && /no WebGPU/.test(none.reason));
  const err = await assertRejects(() => Gpu.open({ gpu: null }), /WebGPU backend unavailable/);
  assert(err instanceof WebGpuUnavailableError);
  // A GPU object that offers no adapter (e.g. blocklisted driver).
  const empty = { requestAdapter: () => Promise.resolve(null) } as unknown as GPU;
  await assertRejects(() => Gpu.open({ gpu: empty }), /offers no adapter/);
});

Deno.test({
  name: "a fallback adapter is refused when the caller says so",
  ignore: ignore || !(probe.ok && probe.info.isFallbackAdapter),
  fn: async () => {
    await assertRejects(() => Gpu.open({ allowFallback: false }), /only a fallback adapter/);
  },
});

Deno.test({
  name: "tensors round-trip, empty tensors read empty, freed tensors refuse use",
  ignore,
  fn: async () => {
    const gpu = await Gpu.open();
    try {
      const t = gpu.tensor([2, 3], [1, 2, 3, 4, 5, 6.5]);
      assertEquals(t.shape, [2, 3]);
      assertEquals(Array.from(await t.read()), [1, 2, 3, 4, 5, 6.5]);
      t.write(new Float32Array([6, 5, 4, 3, 2, 1]));
      assertEquals(Array.from(await t.read()), [6, 5, 4, 3, 2, 1]);
      assertEquals(Array.from(await gpu.tensor(3).read()), [0, 0, 0]);
      assertEquals((await gpu.tensor([0, 5]).read()).length, 0);
      assertThrows(() => t.write([1]), /1 values for a tensor of 6/);
      assertThrows(() => gpu.tensor([2, -1]), /bad tensor shape/);
      t.free();
      assertThrows(() => t.read(), /freed/);
    } finally {
      gpu.destroy();
    }
    assertThrows(() => gpu.throwIfFailed(), /destroyed/);
  },
});

Deno.test({
  name: "pipelines are compiled once per device; device errors surface on the next read",
  ignore,
  fn: async () => {
    const gpu = await Gpu.open();
    try {
      const wgsl = "@compute @workgroup_size(1) fn main() {}";
      assert(gpu.pipeline("noop", () => wgsl) === gpu.pipeline("noop", () => "not compiled"));
      // An invalid usage combination is a validation error reported asynchronously.
      gpu.device.createBuffer({ size: 4, usage: 0x0001 | 0x0080 });
      await assertRejects(() => gpu.flush(), /WebGPU error/);
      // Reported once, then the context is usable again.
      assertEquals(Array.from(await gpu.tensor(1, [2]).read()), [2]);
    } finally {
      gpu.destroy();
    }
  },
});
