/**
 * The kernel module: instantiates the wasm build that fits the host, owns its
 * linear memory (growth, allocation) and hands out typed views. Host-agnostic:
 * no Deno API, so the same file runs in Node and browsers.
 */
import { Allocator } from "./allocator.ts";
import { ThreadPool, type WorkerFactory } from "./threads.ts";

export type WasmVariant = "relaxed" | "simd" | "relaxed-mt" | "simd-mt";
type WasmFn = (...args: number[]) => number;
/** Raw exports: every kernel takes byte pointers and integer sizes. */
export type KernelExports = Record<string, WasmFn>;

const PAGE = 65536;
const MAX_PAGES = 65536; // 4 GiB, the wasm32 limit

export type DType = "f32" | "i32" | "u32" | "u16" | "u8";
type ViewOf<D extends DType> = D extends "f32" ? Float32Array
  : D extends "i32" ? Int32Array
  : D extends "u32" ? Uint32Array
  : D extends "u16" ? Uint16Array
  : Uint8Array;
const BYTES: Record<DType, number> = { f32: 4, i32: 4, u32: 4, u16: 2, u8: 1 };
const CTORS = {
  f32: Float32Array,
  i32: Int32Array,
  u32: Uint32Array,
  u16: Uint16Array,
  u8: Uint8Array,
} as const;

/**
 * An array that lives in wasm memory. `data` is a view that stays valid across
 * memory growth (it is re-made when the buffer changes); no copy is made.
 */
export class WasmArray<D extends DType = "f32"> {
  #view: ViewOf<D> | null = null;
  #buffer: ArrayBufferLike | null = null;
  #freed = false;

  constructor(
    readonly kernels: Kernels,
    readonly dtype: D,
    readonly ptr: number,
    readonly length: number,
    readonly shape: readonly number[],
  ) {}

  get byteLength(): number {
    return this.length * BYTES[this.dtype];
  }

  get data(): ViewOf<D> {
    if (this.#freed) throw new Error("use of a freed wasm array");
    const buffer = this.kernels.memory.buffer;
    if (this.#buffer !== buffer || this.#view === null) {
      this.#view = new CTORS[this.dtype](buffer, this.ptr, this.length) as ViewOf<D>;
      this.#buffer = buffer;
    }
    return this.#view;
  }

  /** Copies `values` in (lengths must match). */
  set(values: ArrayLike<number>): this {
    if (values.length !== this.length) {
      throw new RangeError(`set: ${values.length} values for an array of ${this.length}`);
    }
    this.data.set(values);
    return this;
  }

  /** A copy out of wasm memory, safe to keep after `free`. */
  toArray(): ViewOf<D> {
    return this.data.slice() as ViewOf<D>;
  }

  free(): void {
    if (this.#freed) return;
    this.kernels.free(this.ptr);
    this.#freed = true;
    this.#view = null;
  }
}

export type F32 = WasmArray<"f32">;

export interface LoadOptions {
  /**
   * Where the wasm builds come from: a map of variant → bytes (or compiled
   * module), or a function fetching one. Default: `build/` beside this file.
   */
  sources?:
    | Partial<Record<WasmVariant, BufferSource | WebAssembly.Module>>
    | ((variant: WasmVariant) => Promise<BufferSource>);
  /** Threads for large kernels (1 = no workers). Needs SharedArrayBuffer. */
  threads?: number;
  /** Force plain SIMD even where relaxed SIMD validates. */
  noRelaxed?: boolean;
  /** Creates a worker running `worker.ts`; default uses the global `Worker`. */
  workerFactory?: WorkerFactory;
  /** Initial memory in bytes (grows on demand). */
  initialBytes?: number;
}

async function defaultSource(variant: WasmVariant): Promise<Uint8Array> {
  // Source layout: kernels/core.ts → kernels/build/*.wasm; the JS bundle for
  // other hosts sits in kernels/build/ beside the wasm files.
  const dir = import.meta.url.endsWith(".ts") ? "./build/" : "./";
  const url = new URL(`${dir}dlora-${variant}.wasm`, import.meta.url);
  if (url.protocol === "file:") {
    // Node's fetch has no file: support; node:fs exists in Node, Deno and Bun.
    const fs = await import("node:fs/promises");
    try {
      return new Uint8Array(await fs.readFile(url));
    } catch (e) {
      throw new Error(
        `kernel build ${url.pathname} not found (${
          (e as Error).message
        }); run \`npm run build\` first`,
      );
    }
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`kernel build ${url} could not be fetched: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function sourceOf(
  opts: LoadOptions,
  variant: WasmVariant,
): Promise<BufferSource | WebAssembly.Module | undefined> {
  const s = opts.sources;
  if (s === undefined) return await defaultSource(variant).catch(() => undefined);
  if (typeof s === "function") return await s(variant).catch(() => undefined);
  return s[variant];
}

function validates(src: BufferSource | WebAssembly.Module): boolean {
  return src instanceof WebAssembly.Module || WebAssembly.validate(src);
}

/** Whether this host can run shared-memory threads at all. */
export function threadsAvailable(): boolean {
  const g = globalThis as { crossOriginIsolated?: boolean; Worker?: unknown };
  return typeof SharedArrayBuffer !== "undefined" && g.crossOriginIsolated !== false &&
    typeof g.Worker === "function";
}

export class Kernels {
  readonly exports: KernelExports;
  readonly #alloc: Allocator;
  #pool: ThreadPool | null;

  private constructor(
    readonly memory: WebAssembly.Memory,
    instance: WebAssembly.Instance,
    readonly variant: WasmVariant,
    readonly module: WebAssembly.Module,
    pool: ThreadPool | null,
  ) {
    this.exports = instance.exports as unknown as KernelExports;
    this.#pool = pool;
    const base = this.exports.heapBase();
    this.#alloc = new Allocator(base, memory.buffer.byteLength, (needed) => {
      const pages = Math.ceil(needed / PAGE);
      const have = memory.buffer.byteLength / PAGE;
      // Grow geometrically so repeated small allocations don't grow page by page.
      const add = Math.max(pages, Math.min(have, 16384));
      if (have + add > MAX_PAGES) {
        throw new RangeError(
          `wasm memory exhausted: need ${needed} more bytes beyond ${have * PAGE}`,
        );
      }
      memory.grow(add);
      return memory.buffer.byteLength;
    });
  }

  /** Loads the fastest build the host validates: relaxed SIMD, else plain SIMD. */
  static async load(opts: LoadOptions = {}): Promise<Kernels> {
    const wantThreads = Math.max(1, Math.floor(opts.threads ?? 1));
    const threaded = wantThreads > 1 && threadsAvailable();
    const order: WasmVariant[] = threaded
      ? ["relaxed-mt", "simd-mt", "relaxed", "simd"]
      : ["relaxed", "simd"];
    for (const variant of order) {
      if (opts.noRelaxed && variant.startsWith("relaxed")) continue;
      const src = await sourceOf(opts, variant);
      if (src === undefined || !validates(src)) continue;
      const module = src instanceof WebAssembly.Module ? src : await WebAssembly.compile(src);
      const shared = variant.endsWith("-mt");
      const initial = Math.max(32, Math.ceil((opts.initialBytes ?? 2 * PAGE * 16) / PAGE));
      const memory = new WebAssembly.Memory(
        shared ? { initial, maximum: MAX_PAGES, shared: true } : { initial },
      );
      const instance = await WebAssembly.instantiate(module, { env: { memory } });
      let pool: ThreadPool | null = null;
      if (shared) {
        pool = await ThreadPool.start(module, memory, wantThreads - 1, opts.workerFactory);
      }
      return new Kernels(memory, instance, variant, module, pool);
    }
    throw new Error(
      "no usable kernel build: this host lacks WebAssembly SIMD, or the builds are missing (run `npm run build`)",
    );
  }

  /** Threads that kernels may split over (1 when single-threaded). */
  get threads(): number {
    return this.#pool ? this.#pool.size + 1 : 1;
  }

  get relaxedSimd(): boolean {
    return this.variant.startsWith("relaxed");
  }

  /** Allocates `shape` elements of `dtype` (uninitialised). */
  alloc<D extends DType = "f32">(shape: number | readonly number[], dtype?: D): WasmArray<D> {
    const dims = typeof shape === "number" ? [shape] : [...shape];
    for (const d of dims) {
      if (!Number.isInteger(d) || d < 0) throw new RangeError(`bad shape [${dims}]`);
    }
    const length = dims.reduce((a, b) => a * b, 1);
    const dt = (dtype ?? "f32") as D;
    const ptr = this.#alloc.alloc(length * BYTES[dt]);
    return new WasmArray(this, dt, ptr, length, dims);
  }

  /** Allocates and copies `values` in. */
  from<D extends DType = "f32">(
    values: ArrayLike<number>,
    shape?: readonly number[],
    dtype?: D,
  ): WasmArray<D> {
    const t = this.alloc(shape ?? [values.length], dtype);
    return t.set(values);
  }

  free(ptr: number): void {
    this.#alloc.free(ptr);
  }

  get liveBytes(): number {
    return this.#alloc.liveBytes;
  }

  /**
   * Runs export `name` once per thread with that thread's argument list
   * (`argsPerThread[0]` on the calling thread). Single-threaded kernels run
   * every list in turn, so callers write one code path.
   */
  parallel(name: string, argsPerThread: number[][]): void {
    const fn = this.exports[name];
    if (typeof fn !== "function") throw new Error(`kernel export ${name} not found`);
    if (this.#pool === null || argsPerThread.length === 1) {
      for (const args of argsPerThread) fn(...args);
      return;
    }
    this.#pool.run(name, argsPerThread, (args) => fn(...args));
  }

  /**
   * Lets the idle worker threads sleep at once rather than spin for the next call (which wakes
   * them): call before waiting on the network or another process. No-op without threads.
   */
  park(): void {
    this.#pool?.park();
  }

  /** Stops worker threads; the kernels stay usable single-threaded. */
  close(): void {
    this.#pool?.close();
    this.#pool = null;
  }
}
