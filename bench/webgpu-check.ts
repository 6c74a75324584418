/**
 * Checks the WGSL kernels against the wasm kernels at a few large shapes on
 * whatever WebGPU adapter exists, and times them. Prints one JSON object:
 * adapter info, per case the max error vs wasm and GFLOP/s of both.
 *
 *   deno run -A bench/webgpu-check.ts [--quick] [--threads N] [--iters N]
 *
 * --quick uses small shapes (software adapters such as llvmpipe); --threads
 * sets the wasm thread count (default: min(8, cores)). Exit code 1 when any
 * case's error exceeds its tolerance.
 */
import { Kernels } from "../kernels/core.ts";
import { gemmDyTX, gemmDyW, gemmXWt } from "../kernels/gemm.ts";
import { loraBackward, loraForward } from "../kernels/lora.ts";
import { Gpu, type GpuTensor } from "../kernels/webgpu/device.ts";
import * as wgslGemm from "../kernels/webgpu/gemm.ts";
import * as wgslLora from "../kernels/webgpu/lora.ts";

const args = Deno.args;
const flag = (name: string) => args.includes(name);
const option = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const quick = flag("--quick");
const threads = option("--threads", Math.min(8, navigator.hardwareConcurrency ?? 1));
const iters = option("--iters", quick ? 2 : 10);

// GEMM (M,K,N) and LoRA (M,IN,R,OUT). Large: Llama-7B-like projections over
// 2048 tokens, plus odd sizes that leave ragged tiles everywhere.
const GEMMS: [number, number, number][] = quick
  ? [[64, 96, 80], [130, 70, 65]]
  : [[512, 1024, 1024], [2048, 4096, 4096], [2048, 4096, 11008], [1000, 3001, 777]];
const LORAS: [number, number, number, number][] = quick
  ? [[96, 64, 8, 72], [600, 40, 4, 24]]
  : [[2048, 4096, 16, 4096], [2048, 4096, 8, 11008], [4096, 4096, 64, 4096], [999, 1001, 7, 333]];

function random(n: number, seed: number): Float32Array {
  // xorshift32: deterministic, fast enough for 10^8 values.
  let x = seed | 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** Max |a-b| over max |b| (a scale-free error) and the raw max |a-b|. */
function compare(a: Float32Array, b: Float32Array): { maxAbs: number; rel: number } {
  let maxAbs = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { maxAbs, rel: maxAbs / Math.max(scale, 1e-30) };
}

async function timeIt(fn: () => void, done: () => Promise<unknown>, n: number): Promise<number> {
  fn();
  await done(); // warm-up: pipeline compilation, page faults
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  await done();
  return (performance.now() - t0) / 1000 / n;
}

const k = await Kernels.load({ threads });
const gpu = await Gpu.open();
const results: Record<string, unknown>[] = [];
let failed = false;
const TOL = 1e-4; // relative to the output's largest magnitude

function record(name: string, flops: number, gpuS: number, wasmS: number, errs: Float32Array[][]) {
  const e = errs.map(([a, b]) => compare(a, b));
  const rel = Math.max(...e.map((x) => x.rel)), maxAbs = Math.max(...e.map((x) => x.maxAbs));
  const ok = rel <= TOL;
  failed ||= !ok;
  results.push({
    case: name,
    ok,
    maxAbsError: maxAbs,
    maxRelError: rel,
    webgpuGflops: +(flops / gpuS / 1e9).toFixed(1),
    wasmGflops: +(flops / wasmS / 1e9).toFixed(1),
    webgpuMs: +(gpuS * 1e3).toFixed(3),
    wasmMs: +(wasmS * 1e3).toFixed(3),
  });
}

const gpuRead = (t: GpuTensor) => t.read();

for (const [M, K, N] of GEMMS) {
  const x = random(M * K, 1), w = random(N * K, 2), dy = random(M * N, 3);
  const X = k.from(x), W = k.from(w), dY = k.from(dy);
  const Y = k.alloc(M * N), dX = k.alloc(M * K), dW = k.alloc(N * K);
  const gX = gpu.tensor([M, K], x), gW = gpu.tensor([N, K], w), gdY = gpu.tensor([M, N], dy);
  const gY = gpu.tensor([M, N]), gdX = gpu.tensor([M, K]), gdW = gpu.tensor([N, K]);
  const flops = 2 * M * K * N;
  const flush = () => gpu.flush(), none = () => Promise.resolve();
  const layouts = [
    {
      name: "xwt",
      wasm: () => gemmXWt(k, Y, X, W, M, K, N),
      gpu: () => wgslGemm.gemmXWt(gpu, gY, gX, gW, M, K, N),
      out: [gY, Y] as const,
    },
    {
      name: "dyw",
      wasm: () => gemmDyW(k, dX, dY, W, M, N, K),
      gpu: () => wgslGemm.gemmDyW(gpu, gdX, gdY, gW, M, N, K),
      out: [gdX, dX] as const,
    },
    {
      name: "dytx",
      wasm: () => gemmDyTX(k, dW, dY, X, M, N, K),
      gpu: () => wgslGemm.gemmDyTX(gpu, gdW, gdY, gX, M, N, K),
      out: [gdW, dW] as const,
    },
  ];
  for (const l of layouts) {
    // wasm is timed once at large sizes: it is the slow side.
    const wasmS = await timeIt(l.wasm, none, quick ? iters : 1);
    const gpuS = await timeIt(l.gpu, flush, iters);
    record(`gemm ${l.name} ${M}×${K}×${N}`, flops, gpuS, wasmS, [[
      await gpuRead(l.out[0]),
      l.out[1].toArray(),
    ]]);
  }
  for (const t of [X, W, dY, Y, dX, dW]) t.free();
  for (const t of [gX, gW, gdY, gY, gdX, gdW]) t.free();
}

for (const [M, IN, R, OUT] of LORAS) {
  const s = 2 / R;
  const x = random(M * IN, 4), a = random(R * IN, 5), b = random(OUT * R, 6);
  const g = random(M * OUT, 7);
  const X = k.from(x), A = k.from(a), B = k.from(b), G = k.from(g);
  const XA = k.alloc(M * R), dY = k.alloc(M * OUT);
  const dX = k.alloc(M * IN), dA = k.alloc(R * IN), dB = k.alloc(OUT * R);
  const gX = gpu.tensor([M, IN], x), gA = gpu.tensor([R, IN], a), gB = gpu.tensor([OUT, R], b);
  const gG = gpu.tensor([M, OUT], g), gXA = gpu.tensor([M, R]), gdY = gpu.tensor([M, OUT]);
  const gdX = gpu.tensor([M, IN]), gdA = gpu.tensor([R, IN]), gdB = gpu.tensor([OUT, R]);
  const fwdFlops = 2 * M * R * (IN + OUT), bwdFlops = 2 * M * R * (2 * OUT + 2 * IN);
  const flush = () => gpu.flush(), none = () => Promise.resolve();
  const name = `${M}×${IN}×r${R}×${OUT}`;

  let wasmS = await timeIt(
    () => loraForward(k, dY, XA, X, A, B, M, IN, R, OUT, s),
    none,
    quick ? iters : 2,
  );
  let gpuS = await timeIt(
    () => wgslLora.loraForward(gpu, gdY, gXA, gX, gA, gB, M, IN, R, OUT, s),
    flush,
    iters,
  );
  record(`lora forward ${name}`, fwdFlops, gpuS, wasmS, [
    [await gXA.read(), XA.toArray()],
    [await gdY.read(), dY.toArray()],
  ]);

  wasmS = await timeIt(
    () => loraBackward(k, { dX, dA, dB }, G, X, XA, A, B, M, IN, R, OUT, s),
    none,
    quick ? iters : 2,
  );
  gpuS = await timeIt(
    () =>
      wgslLora.loraBackward(
        gpu,
        { dX: gdX, dA: gdA, dB: gdB },
        gG,
        gX,
        gXA,
        gA,
        gB,
        M,
        IN,
        R,
        OUT,
        s,
      ),
    flush,
    iters,
  );
  record(`lora backward ${name}`, bwdFlops, gpuS, wasmS, [
    [await gdX.read(), dX.toArray()],
    [await gdA.read(), dA.toArray()],
    [await gdB.read(), dB.toArray()],
  ]);
  for (const t of [X, A, B, G, XA, dY, dX, dA, dB]) t.free();
  for (const t of [gX, gA, gB, gG, gXA, gdY, gdX, gdA, gdB]) t.free();
}

const lim = gpu.limits;
console.log(JSON.stringify(
  {
    adapter: gpu.adapterInfo,
    limits: {
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup,
    },
    wasm: { variant: k.variant, threads: k.threads },
    iters,
    tolerance: TOL,
    ok: !failed,
    results,
  },
  null,
  2,
));
gpu.destroy();
k.close();
if (failed) Deno.exit(1);
