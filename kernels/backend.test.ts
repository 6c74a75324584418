import {
  AUTO_WEBGPU_MIN_FLOPS,
  type BackendTensor,
  chooseBackend,
  type LinearBackend,
  selectBackend,
} from "./backend.ts";
import { type AdapterSummary, probeAdapter } from "./webgpu/device.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertRejects,
  randn,
  testKernels,
} from "../tests/util.ts";

const probe = await probeAdapter();
const noAdapter = !probe.ok;

const hardware: AdapterSummary = {
  vendor: "nvidia",
  architecture: "hopper",
  device: "",
  description: "NVIDIA H100",
  isFallbackAdapter: false,
};
const software: AdapterSummary = { ...hardware, description: "llvmpipe", isFallbackAdapter: true };

Deno.test("auto never picks a software fallback adapter, whatever the problem size", () => {
  const huge = { M: 1 << 14, K: 1 << 14, N: 1 << 14 };
  const c = chooseBackend(software, huge);
  assertEquals(c.name, "wasm");
  assert(/software fallback \(llvmpipe\)/.test(c.reason), c.reason);
  assertEquals(chooseBackend(software).name, "wasm");
  assertEquals(chooseBackend(null, huge).name, "wasm");
});

Deno.test("auto keeps small problems on wasm and sends large ones to a hardware adapter", () => {
  assertEquals(chooseBackend(hardware, { M: 1, K: 1, N: 1 }).name, "wasm");
  assertEquals(chooseBackend(hardware, { M: 16, K: 64, N: 64 }).name, "wasm");
  assertEquals(chooseBackend(hardware, { M: 2048, K: 4096, N: 4096 }).name, "webgpu");
  // The threshold is inclusive and can be moved.
  const edge = { M: AUTO_WEBGPU_MIN_FLOPS / 2, K: 1, N: 1 };
  assertEquals(chooseBackend(hardware, edge).name, "webgpu");
  assertEquals(chooseBackend(hardware, { M: 8, K: 8, N: 8 }, 1).name, "webgpu");
  assertEquals(chooseBackend(hardware).name, "webgpu");
});

Deno.test("selectBackend auto on this host: tiny shapes and fallback adapters give wasm", async () => {
  const k = await testKernels();
  const tiny = await selectBackend({ backend: "auto", shape: { M: 1, K: 1, N: 1 }, kernels: k });
  assertEquals(tiny.name, "wasm");
  tiny.destroy();
  const big = await selectBackend({ shape: { M: 4096, K: 4096, N: 4096 }, kernels: k });
  const expected = probe.ok && !probe.info.isFallbackAdapter ? "webgpu" : "wasm";
  assertEquals(big.name, expected, big.reason);
  big.destroy();
  const absent = await selectBackend({ gpu: null, shape: { M: 4096, K: 4096, N: 4096 } });
  assertEquals(absent.name, "wasm");
  assertEquals(absent.reason, "no WebGPU adapter");
  absent.destroy();
});

Deno.test("webgpu requested where there is none fails with an actionable error", async () => {
  await assertRejects(
    () => selectBackend({ backend: "webgpu", gpu: null }),
    /WebGPU backend unavailable: this host has no WebGPU/,
  );
  await assertRejects(
    () => selectBackend({ backend: "cuda" as "wasm" }),
    /unknown backend "cuda": expected wasm, webgpu or auto/,
  );
});

/** Runs every kernel of `b` on the same inputs; returns all outputs by name. */
async function runAll(b: LinearBackend): Promise<Record<string, Float32Array>> {
  const [M, K, N] = [19, 33, 10];
  const [IN, R, OUT, s] = [K, 4, N, 0.5];
  const t = (shape: number[], seed?: number): BackendTensor =>
    b.tensor(shape, seed === undefined ? undefined : randn(shape[0] * shape[1], seed));
  const X = t([M, K], 1), W = t([N, K], 2), dY = t([M, N], 3);
  const Y = t([M, N], 4), dX = t([M, K], 5), dW = t([N, K], 6);
  await b.gemmXWt(Y, X, W, M, K, N, { accumulate: true });
  await b.gemmDyW(dX, dY, W, M, N, K);
  await b.gemmDyTX(dW, dY, X, M, N, K, { accumulate: true });
  const A = t([R, IN], 7), B = t([OUT, R], 8), XA = t([M, R]), dYl = t([M, OUT], 9);
  await b.loraForward(dYl, XA, X, A, B, M, IN, R, OUT, s, { accumulate: true });
  const dA = t([R, IN], 10), dB = t([OUT, R]), dXl = t([M, IN]);
  await b.loraBackward({ dX: dXl, dA, dB }, dY, X, XA, A, B, M, IN, R, OUT, s, {
    accumulateGrads: true,
  });
  // Without dX (the wasm kernel then writes a throwaway).
  const dA2 = t([R, IN]), dB2 = t([OUT, R]);
  await b.loraBackward({ dA: dA2, dB: dB2 }, dY, X, XA, A, B, M, IN, R, OUT, s);
  const out: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries({ Y, dX, dW, XA, dYl, dA, dB, dXl, dA2, dB2 })) {
    out[name] = await v.read();
  }
  await b.flush();
  for (const v of [X, W, dY, Y, dX, dW, A, B, XA, dYl, dA, dB, dXl, dA2, dB2]) v.free();
  return out;
}

Deno.test({
  name: "explicit webgpu works (even on a fallback adapter) and matches wasm on every kernel",
  ignore: noAdapter,
  fn: async () => {
    const gpuBackend = await selectBackend({ backend: "webgpu" });
    const wasm = await selectBackend({ backend: "wasm", kernels: await testKernels() });
    try {
      assertEquals(gpuBackend.name, "webgpu");
      assertEquals(gpuBackend.reason, "requested");
      assert(gpuBackend.description.startsWith("webgpu "), gpuBackend.description);
      const got = await runAll(gpuBackend), want = await runAll(wasm);
      for (const name of Object.keys(want)) {
        assertClose(got[name], want[name], { atol: 1e-4, rtol: 1e-4, msg: name });
      }
    } finally {
      gpuBackend.destroy();
      wasm.destroy();
    }
  },
});

Deno.test({
  name: "a backend refuses another backend's tensors by name",
  ignore: noAdapter,
  fn: async () => {
    const gpuBackend = await selectBackend({ backend: "webgpu" });
    const wasm = await selectBackend({ backend: "wasm", kernels: await testKernels() });
    try {
      const X = wasm.tensor([2, 3]), W = gpuBackend.tensor([2, 3]), Y = gpuBackend.tensor([2, 2]);
      await assertRejects(
        () => gpuBackend.gemmXWt(Y, X, W, 2, 3, 2),
        /gemmXWt: X is a wasm tensor; this backend is webgpu/,
      );
      await assertRejects(
        () => wasm.gemmXWt(wasm.tensor([2, 2]), X, W, 2, 3, 2),
        /gemmXWt: W is a webgpu tensor; this backend is wasm/,
      );
      // Shape errors of either backend come back as rejections too.
      await assertRejects(
        () => gpuBackend.gemmXWt(Y, W, W, 2, 4, 2),
        /X has 6 elements, expected M·K = 8/,
      );
    } finally {
      gpuBackend.destroy();
      wasm.destroy();
    }
  },
});

Deno.test("the wasm backend keeps a caller's kernel instance open and zero-fills tensors", async () => {
  const k = await testKernels();
  const wasm = await selectBackend({ backend: "wasm", kernels: k });
  assertEquals(wasm.reason, "requested");
  const t = wasm.tensor([2, 2]);
  assertEquals(Array.from(await t.read()), [0, 0, 0, 0]);
  t.write([1, 2, 3, 4]);
  assertEquals(Array.from(await t.read()), [1, 2, 3, 4]);
  t.free();
  wasm.destroy();
  assert(k.alloc(1).length === 1, "kernels still usable after destroy");
});
