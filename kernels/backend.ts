/**
 * One API for the linear-layer math (the three GEMM layouts and LoRA forward/
 * backward) over two backends: WebAssembly (gemm.ts, lora.ts) and WebGPU
 * (webgpu/). Tensors are resident on their backend (wasm memory or a GPU
 * buffer), so a caller uploads once, chains kernels, and reads back only what
 * it needs. Every kernel returns a promise: on wasm it has run when the
 * promise settles; on WebGPU it has been queued, and `read()` waits for it.
 *
 * `selectBackend({ backend: "auto" })` takes WebGPU only when the adapter is
 * real hardware (never a software fallback such as Mesa llvmpipe) and the
 * problem is large enough to repay a GPU round trip; otherwise wasm.
 * Host-agnostic: no Deno API.
 */
import { type F32, Kernels, type LoadOptions } from "./core.ts";
import { gemmDyTX, gemmDyW, type GemmOptions, gemmXWt } from "./gemm.ts";
import {
  loraBackward,
  type LoraBackwardOptions,
  loraForward,
  type LoraForwardOptions,
} from "./lora.ts";
import {
  type AdapterSummary,
  Gpu,
  type GpuTensor,
  probeAdapter,
  WebGpuUnavailableError,
} from "./webgpu/device.ts";
import * as wgslGemm from "./webgpu/gemm.ts";
import * as wgslLora from "./webgpu/lora.ts";

export type BackendName = "wasm" | "webgpu";
export type BackendChoice = BackendName | "auto";

/** A row-major f32 tensor living on one backend. */
export interface BackendTensor {
  readonly backend: BackendName;
  readonly shape: readonly number[];
  readonly length: number;
  /** A copy of the contents once all queued kernels have run. */
  read(): Promise<Float32Array>;
  /** Overwrites the contents (lengths must match); ordered before later kernels. */
  write(values: ArrayLike<number>): void;
  free(): void;
}

/** The gradients loraBackward writes. */
export interface BackendLoraGrads {
  /** (M,IN); may be omitted when the input gradient is not needed. */
  dX?: BackendTensor;
  /** (R,IN) */
  dA: BackendTensor;
  /** (OUT,R) */
  dB: BackendTensor;
}

/**
 * Linear-layer kernels on one backend. Shapes (row-major f32):
 *   gemmXWt  Y (M,N) = X (M,K)·W (N,K)ᵀ
 *   gemmDyW  dX (M,K) = dY (M,N)·W (N,K)
 *   gemmDyTX dW (N,K) = dY (M,N)ᵀ·X (M,K)
 *   loraForward  XA (M,R) = X (M,IN)·A (R,IN)ᵀ;  ΔY (M,OUT) = s·XA·B (OUT,R)ᵀ
 *   loraBackward given G (M,OUT): dB = s·Gᵀ·XA, dA = s·(G·B)ᵀ·X, dX = s·(G·B)·A
 * Options are the wasm kernels' (GemmOptions, LoraForwardOptions,
 * LoraBackwardOptions): `accumulate` adds into the output instead of
 * overwriting it. Sizes must be positive integers.
 */
export interface LinearBackend {
  readonly name: BackendName;
  /** What runs the kernels, e.g. "wasm relaxed, 1 thread" or the GPU's name. */
  readonly description: string;
  /** Why `selectBackend` chose this backend. */
  readonly reason: string;
  /** A tensor of `shape`, zero-filled or filled from `values`. */
  tensor(shape: number | readonly number[], values?: ArrayLike<number>): BackendTensor;
  gemmXWt(
    Y: BackendTensor,
    X: BackendTensor,
    W: BackendTensor,
    M: number,
    K: number,
    N: number,
    opts?: GemmOptions,
  ): Promise<void>;
  gemmDyW(
    dX: BackendTensor,
    dY: BackendTensor,
    W: BackendTensor,
    M: number,
    N: number,
    K: number,
    opts?: GemmOptions,
  ): Promise<void>;
  gemmDyTX(
    dW: BackendTensor,
    dY: BackendTensor,
    X: BackendTensor,
    M: number,
    N: number,
    K: number,
    opts?: GemmOptions,
  ): Promise<void>;
  loraForward(
    dY: BackendTensor,
    XA: BackendTensor,
    X: BackendTensor,
    A: BackendTensor,
    B: BackendTensor,
    M: number,
    IN: number,
    R: number,
    OUT: number,
    scale: number,
    opts?: LoraForwardOptions,
  ): Promise<void>;
  loraBackward(
    grads: BackendLoraGrads,
    G: BackendTensor,
    X: BackendTensor,
    XA: BackendTensor,
    A: BackendTensor,
    B: BackendTensor,
    M: number,
    IN: number,
    R: number,
    OUT: number,
    scale: number,
    opts?: LoraBackwardOptions,
  ): Promise<void>;
  /** Resolves when every queued kernel has finished. */
  flush(): Promise<void>;
  /** Releases what the backend owns (a GPU device, wasm worker threads). */
  destroy(): void;
}

// ---------------------------------------------------------------------------
// Selection

/**
 * `auto` takes WebGPU only from this many FLOPs (2·M·K·N) up: 2^26 ≈ 6.7e7, a
 * few milliseconds of single-thread wasm SIMD, about what one GPU submit plus
 * read-back costs in a browser. Smaller products stay on wasm.
 */
export const AUTO_WEBGPU_MIN_FLOPS = 2 ** 26;

export interface ProblemShape {
  M: number;
  K: number;
  N: number;
}

/**
 * The pure decision behind `auto`: `adapter` is null when none exists.
 * Without a shape, a hardware adapter wins.
 */
export function chooseBackend(
  adapter: AdapterSummary | null,
  shape?: ProblemShape,
  minFlops = AUTO_WEBGPU_MIN_FLOPS,
): { name: BackendName; reason: string } {
  if (!adapter) return { name: "wasm", reason: "no WebGPU adapter" };
  if (adapter.isFallbackAdapter) {
    return {
      name: "wasm",
      reason: `the WebGPU adapter is a software fallback (${adapter.description || "unnamed"})`,
    };
  }
  if (shape) {
    const flops = 2 * shape.M * shape.K * shape.N;
    if (flops < minFlops) {
      return {
        name: "wasm",
        reason: `2·M·K·N = ${flops} is below the WebGPU threshold ${minFlops}`,
      };
    }
    return {
      name: "webgpu",
      reason: `hardware adapter and 2·M·K·N = ${flops} ≥ ${minFlops}`,
    };
  }
  return { name: "webgpu", reason: "hardware adapter (no problem size given)" };
}

export interface SelectOptions {
  /** Default "auto". An explicit "webgpu" also accepts a software fallback adapter. */
  backend?: BackendChoice;
  /** Typical problem size, for `auto`. */
  shape?: ProblemShape;
  /** Threshold for `auto`; default AUTO_WEBGPU_MIN_FLOPS. */
  minFlops?: number;
  /** A loaded kernel instance to use (kept open on destroy), or options to load one. */
  kernels?: Kernels | LoadOptions;
  /** WebGPU entry point; default `navigator.gpu`. `null` acts as if absent. */
  gpu?: GPU | null;
}

/** Picks and opens a backend; throws an actionable error if "webgpu" is unavailable. */
export async function selectBackend(opts: SelectOptions = {}): Promise<LinearBackend> {
  const want = opts.backend ?? "auto";
  if (want !== "auto" && want !== "wasm" && want !== "webgpu") {
    throw new RangeError(`unknown backend "${want}": expected wasm, webgpu or auto`);
  }
  if (want === "wasm") return await openWasm(opts, "requested");
  const probe = await probeAdapter({ gpu: opts.gpu });
  if (want === "webgpu") {
    if (!probe.ok) throw new WebGpuUnavailableError(probe.reason);
    return webgpuBackend(await Gpu.fromAdapter(probe.adapter, probe.info), "requested");
  }
  const choice = chooseBackend(probe.ok ? probe.info : null, opts.shape, opts.minFlops);
  if (choice.name === "webgpu" && probe.ok) {
    return webgpuBackend(await Gpu.fromAdapter(probe.adapter, probe.info), choice.reason);
  }
  return await openWasm(opts, choice.reason);
}

async function openWasm(opts: SelectOptions, reason: string): Promise<LinearBackend> {
  if (opts.kernels instanceof Kernels) return wasmBackend(opts.kernels, reason);
  const k = await Kernels.load(opts.kernels ?? {});
  return wasmBackend(k, reason, () => k.close());
}

// ---------------------------------------------------------------------------
// Both backends are one class over a tensor type T and kernels on T.

interface KernelSet<T> {
  gemmXWt(Y: T, X: T, W: T, M: number, K: number, N: number, opts: GemmOptions): void;
  gemmDyW(dX: T, dY: T, W: T, M: number, N: number, K: number, opts: GemmOptions): void;
  gemmDyTX(dW: T, dY: T, X: T, M: number, N: number, K: number, opts: GemmOptions): void;
  loraForward(
    dY: T,
    XA: T,
    X: T,
    A: T,
    B: T,
    M: number,
    IN: number,
    R: number,
    OUT: number,
    scale: number,
    opts: LoraForwardOptions,
  ): void;
  loraBackward(
    grads: { dX?: T; dA: T; dB: T },
    G: T,
    X: T,
    XA: T,
    A: T,
    B: T,
    M: number,
    IN: number,
    R: number,
    OUT: number,
    scale: number,
    opts: LoraBackwardOptions,
  ): void;
}

interface BackendParts<T> {
  name: BackendName;
  description: string;
  reason: string;
  tensor(shape: number | readonly number[], values?: ArrayLike<number>): BackendTensor;
  /** The backend's own handle, or undefined for another backend's tensor. */
  unwrap(t: BackendTensor): T | undefined;
  kernels: KernelSet<T>;
  flush(): Promise<void>;
  destroy(): void;
}

class Backend<T> implements LinearBackend {
  readonly name: BackendName;
  readonly description: string;
  readonly reason: string;

  constructor(private readonly parts: BackendParts<T>) {
    this.name = parts.name;
    this.description = parts.description;
    this.reason = parts.reason;
  }

  tensor(shape: number | readonly number[], values?: ArrayLike<number>): BackendTensor {
    return this.parts.tensor(shape, values);
  }

  #u(fn: string, name: string, t: BackendTensor): T {
    const inner = this.parts.unwrap(t);
    if (inner === undefined) {
      throw new TypeError(`${fn}: ${name} is a ${t.backend} tensor; this backend is ${this.name}`);
    }
    return inner;
  }

  // deno-lint-ignore require-await
  async gemmXWt(
    Y: BackendTensor,
    X: BackendTensor,
    W: BackendTensor,
    M: number,
    K: number,
    N: number,
    opts: GemmOptions = {},
  ): Promise<void> {
    const f = "gemmXWt";
    this.parts.kernels.gemmXWt(
      this.#u(f, "Y", Y),
      this.#u(f, "X", X),
      this.#u(f, "W", W),
      M,
      K,
      N,
      opts,
    );
  }

  // deno-lint-ignore require-await
  async gemmDyW(
    dX: BackendTensor,
    dY: BackendTensor,
    W: BackendTensor,
    M: number,
    N: number,
    K: number,
    opts: GemmOptions = {},
  ): Promise<void> {
    const f = "gemmDyW";
    this.parts.kernels.gemmDyW(
      this.#u(f, "dX", dX),
      this.#u(f, "dY", dY),
      this.#u(f, "W", W),
      M,
      N,
      K,
      opts,
    );
  }

  // deno-lint-ignore require-await
  async gemmDyTX(
    dW: BackendTensor,
    dY: BackendTensor,
    X: BackendTensor,
    M: number,
    N: number,
    K: number,
    opts: GemmOptions = {},
  ): Promise<void> {
    const f = "gemmDyTX";
    this.parts.kernels.gemmDyTX(
      this.#u(f, "dW", dW),
      this.#u(f, "dY", dY),
      this.#u(f, "X", X),
      M,
      N,
      K,
      opts,
    );
  }

  // deno-lint-ignore require-await
  async loraForward(
    dY: BackendTensor,
    XA: BackendTensor,
    X: BackendTensor,
    A: BackendTensor,
    B: BackendTensor,
    M: number,
    IN: number,
    R: number,
    OUT: number,
    scale: number,
    opts: LoraForwardOptions = {},
  ): Promise<void> {
    const f = "loraForward";
    this.parts.kernels.loraForward(
      this.#u(f, "dY", dY),
      this.#u(f, "XA", XA),
      this.#u(f, "X", X),
      this.#u(f, "A", A),
      this.#u(f, "B", B),
      M,
      IN,
      R,
      OUT,
      scale,
      opts,
    );
  }

  // deno-lint-ignore require-await
  async loraBackward(
    grads: BackendLoraGrads,
    G: BackendTensor,
    X: BackendTensor,
    XA: BackendTensor,
    A: BackendTensor,
    B: BackendTensor,
    M: number,
    IN: number,
    R: number,
    OUT: number,
    scale: number,
    opts: LoraBackwardOptions = {},
  ): Promise<void> {
    const f = "loraBackward";
    this.parts.kernels.loraBackward(
      {
        dX: grads.dX ? this.#u(f, "dX", grads.dX) : undefined,
        dA: this.#u(f, "dA", grads.dA),
        dB: this.#u(f, "dB", grads.dB),
      },
      this.#u(f, "G", G),
      this.#u(f, "X", X),
      this.#u(f, "XA", XA),
      this.#u(f, "A", A),
      this.#u(f, "B", B),
      M,
      IN,
      R,
      OUT,
      scale,
      opts,
    );
  }

  flush(): Promise<void> {
    return this.parts.flush();
  }

  destroy(): void {
    this.parts.destroy();
  }
}

// ---------------------------------------------------------------------------
// WebAssembly

/** A tensor in wasm memory; `array` is the underlying WasmArray. */
export class WasmTensor implements BackendTensor {
  readonly backend = "wasm";
  constructor(readonly array: F32) {}
  get shape(): readonly number[] {
    return this.array.shape;
  }
  get length(): number {
    return this.array.length;
  }
  read(): Promise<Float32Array> {
    return Promise.resolve(this.array.toArray());
  }
  write(values: ArrayLike<number>): void {
    this.array.set(values);
  }
  free(): void {
    this.array.free();
  }
}

/** The wasm backend over a loaded kernel instance; `close` runs on destroy. */
export function wasmBackend(k: Kernels, reason = "requested", close?: () => void): LinearBackend {
  const threads = k.threads;
  return new Backend<F32>({
    name: "wasm",
    description: `wasm ${k.variant}, ${threads} thread${threads === 1 ? "" : "s"}`,
    reason,
    tensor(shape, values) {
      const a = k.alloc(shape);
      if (values !== undefined) a.set(values);
      else a.data.fill(0);
      return new WasmTensor(a);
    },
    unwrap: (t) => (t instanceof WasmTensor ? t.array : undefined),
    kernels: {
      gemmXWt: (Y, X, W, M, K, N, o) => gemmXWt(k, Y, X, W, M, K, N, o),
      gemmDyW: (dX, dY, W, M, N, K, o) => gemmDyW(k, dX, dY, W, M, N, K, o),
      gemmDyTX: (dW, dY, X, M, N, K, o) => gemmDyTX(k, dW, dY, X, M, N, K, o),
      loraForward: (dY, XA, X, A, B, M, IN, R, OUT, s, o) =>
        loraForward(k, dY, XA, X, A, B, M, IN, R, OUT, s, o),
      loraBackward(g, G, X, XA, A, B, M, IN, R, OUT, s, o) {
        // The wasm kernel always writes dX: give it a throwaway when none is wanted.
        const dX = g.dX ?? k.alloc(M * IN);
        try {
          loraBackward(k, { dX, dA: g.dA, dB: g.dB }, G, X, XA, A, B, M, IN, R, OUT, s, o);
        } finally {
          if (!g.dX) dX.free();
        }
      },
    },
    flush: () => Promise.resolve(),
    destroy: () => close?.(),
  });
}

// ---------------------------------------------------------------------------
// WebGPU

/** A tensor in a GPU buffer; `tensor` is the underlying GpuTensor. */
export class WebGpuTensor implements BackendTensor {
  readonly backend = "webgpu";
  constructor(readonly tensor: GpuTensor) {}
  get shape(): readonly number[] {
    return this.tensor.shape;
  }
  get length(): number {
    return this.tensor.length;
  }
  read(): Promise<Float32Array> {
    return this.tensor.read();
  }
  write(values: ArrayLike<number>): void {
    this.tensor.write(values);
  }
  free(): void {
    this.tensor.free();
  }
}

/** The WebGPU backend over an open context; destroy releases the context. */
export function webgpuBackend(gpu: Gpu, reason = "requested"): LinearBackend {
  const info = gpu.adapterInfo;
  const what = info.description || [info.vendor, info.architecture].filter(Boolean).join(" ");
  return new Backend<GpuTensor>({
    name: "webgpu",
    description: `webgpu ${what || "adapter"}${
      info.isFallbackAdapter ? " (software fallback)" : ""
    }`,
    reason,
    tensor: (shape, values) => new WebGpuTensor(gpu.tensor(shape, values)),
    unwrap: (t) => (t instanceof WebGpuTensor ? t.tensor : undefined),
    kernels: {
      gemmXWt: (Y, X, W, M, K, N, o) => wgslGemm.gemmXWt(gpu, Y, X, W, M, K, N, o),
      gemmDyW: (dX, dY, W, M, N, K, o) => wgslGemm.gemmDyW(gpu, dX, dY, W, M, N, K, o),
      gemmDyTX: (dW, dY, X, M, N, K, o) => wgslGemm.gemmDyTX(gpu, dW, dY, X, M, N, K, o),
      loraForward: (dY, XA, X, A, B, M, IN, R, OUT, s, o) =>
        wgslLora.loraForward(gpu, dY, XA, X, A, B, M, IN, R, OUT, s, o),
      loraBackward: (g, G, X, XA, A, B, M, IN, R, OUT, s, o) =>
        wgslLora.loraBackward(gpu, g, G, X, XA, A, B, M, IN, R, OUT, s, o),
    },
    flush: () => gpu.flush(),
    destroy: () => gpu.destroy(),
  });
}
