/**
 * What a device reports when it registers (DLORA.md §4): a short benchmark of its GEMM kernel over
 * all its threads (GFLOP/s), its thread count and its memory. The coordinator's tier policy reads
 * these; round-trip time and bandwidth are measured on the step stream instead.
 */
import { type F32, gemmFlops, gemmXWt, type Kernels } from "../../kernels/mod.ts";

export interface Capability {
  /** GEMM GFLOP/s over every kernel thread. */
  gflops: number;
  threads: number;
  /** Total memory of the machine, MiB (0 when the host does not say). */
  memoryMb: number;
}

export interface BenchmarkOptions {
  /** Time to spend, milliseconds (default 300). */
  ms?: number;
  /** Square size of the product (default 256: LoRA-sized work, fits every device). */
  size?: number;
}

/** GFLOP/s of Y = X·Wᵀ (size³) repeated for about `ms`, after one untimed call. */
export function benchmarkGemm(k: Kernels, opts: BenchmarkOptions = {}): number {
  const n = opts.size ?? 256, budget = opts.ms ?? 300;
  const arrays: F32[] = [k.alloc([n, n]), k.alloc([n, n]), k.alloc([n, n])];
  try {
    const [Y, X, W] = arrays;
    for (let i = 0; i < n * n; i++) {
      X.data[i] = ((i * 7919) % 1000) / 1000 - 0.5;
      W.data[i] = ((i * 104729) % 1000) / 1000 - 0.5;
    }
    gemmXWt(k, Y, X, W, n, n, n);
    let calls = 0;
    const t0 = performance.now();
    let elapsed = 0;
    do {
      gemmXWt(k, Y, X, W, n, n, n);
      calls++;
      elapsed = performance.now() - t0;
    } while (elapsed < budget);
    return (calls * gemmFlops(n, n, n)) / (elapsed / 1000) / 1e9;
  } finally {
    for (const a of arrays) a.free();
  }
}

/** Total memory in MiB from the host (Deno's systemMemoryInfo, else navigator.deviceMemory). */
export function hostMemoryMb(): number {
  const deno = (globalThis as { Deno?: { systemMemoryInfo?: () => { total: number } } }).Deno;
  try {
    const total = deno?.systemMemoryInfo?.().total;
    if (total !== undefined && total > 0) return Math.floor(total / (1024 * 1024));
  } catch {
    // no --allow-sys: fall through
  }
  const gb = (globalThis as { navigator?: { deviceMemory?: number } }).navigator?.deviceMemory;
  return gb !== undefined ? Math.floor(gb * 1024) : 0;
}

export function measureCapability(k: Kernels, opts: BenchmarkOptions = {}): Capability {
  // Round to what a report needs; the registration schema wants gflops > 0 and memory ≥ 16 MiB.
  const gflops = Math.max(0.01, Math.round(benchmarkGemm(k, opts) * 100) / 100);
  return { gflops, threads: k.threads, memoryMb: Math.max(16, hostMemoryMb()) };
}
