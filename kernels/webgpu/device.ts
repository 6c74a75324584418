/**
 * WebGPU plumbing for the WGSL kernels: finds an adapter (`navigator.gpu` in
 * Deno and browsers; Node has none unless a `GPU` object is passed in), opens a
 * device with the adapter's buffer limits, caches compute pipelines per device
 * and owns resident f32 tensors. Host-agnostic: no Deno API.
 */

// Numeric flags instead of the GPUBufferUsage/GPUMapMode globals, which hosts
// that inject a GPU object (Node packages) may not define.
const MAP_READ = 0x0001, COPY_SRC = 0x0004, COPY_DST = 0x0008, UNIFORM = 0x0040;
const STORAGE = 0x0080;
const MAP_MODE_READ = 0x0001;

/** What we report about an adapter (a plain copy of GPUAdapterInfo). */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Software or otherwise slow adapter (e.g. Mesa llvmpipe): never picked automatically. */
  isFallbackAdapter: boolean;
}

export type AdapterProbe =
  | { ok: true; adapter: GPUAdapter; info: AdapterSummary }
  | { ok: false; reason: string };

export interface GpuOptions {
  /** A WebGPU entry point; default `navigator.gpu`. `null` means "act as if absent". */
  gpu?: GPU | null;
  powerPreference?: GPUPowerPreference;
}

/** The host's WebGPU entry point, if any. */
export function hostGpu(): GPU | undefined {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu ?? undefined;
}

function summarize(adapter: GPUAdapter): AdapterSummary {
  // Older implementations put isFallbackAdapter on the adapter itself.
  const info = (adapter as { info?: Partial<GPUAdapterInfo> }).info ?? {};
  const legacy = (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  return {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    device: info.device ?? "",
    description: info.description ?? "",
    isFallbackAdapter: Boolean(info.isFallbackAdapter ?? legacy ?? false),
  };
}

/** Asks for an adapter; never throws (a missing GPU is an answer, not an error). */
export async function probeAdapter(opts: GpuOptions = {}): Promise<AdapterProbe> {
  const gpu = opts.gpu === undefined ? hostGpu() : opts.gpu;
  if (!gpu) return { ok: false, reason: "this host has no WebGPU (navigator.gpu is undefined)" };
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference });
  } catch (e) {
    return { ok: false, reason: `requestAdapter failed: ${(e as Error).message}` };
  }
  if (!adapter) return { ok: false, reason: "WebGPU is present but offers no adapter" };
  return { ok: true, adapter, info: summarize(adapter) };
}

/** Thrown when WebGPU was asked for and cannot be had. */
export class WebGpuUnavailableError extends Error {
  constructor(reason: string) {
    super(`WebGPU backend unavailable: ${reason}`);
    this.name = "WebGpuUnavailableError";
  }
}

/**
 * A device plus what the kernels keep on it: cached pipelines, named scratch
 * buffers, and the first uncaptured error (reported on the next read, since
 * kernels only enqueue work).
 */
export class Gpu {
  readonly #pipelines = new Map<string, GPUComputePipeline>();
  readonly #scratch = new Map<string, GPUBuffer>();
  /** Buffers replaced while commands referring to them may not be submitted yet. */
  #retired: GPUBuffer[] = [];
  #error: string | null = null;
  #destroyed = false;

  private constructor(
    readonly device: GPUDevice,
    readonly adapterInfo: AdapterSummary,
    readonly ownsDevice: boolean,
  ) {
    device.addEventListener("uncapturederror", (e) => {
      this.#error ??= (e as GPUUncapturedErrorEvent).error.message;
    });
    device.lost.then((info) => {
      if (!this.#destroyed) this.#error ??= `device lost (${info.reason}): ${info.message}`;
    });
  }

  /**
   * Opens a device on the host's adapter. `allowFallback` (default true) admits
   * software adapters: explicit requests and tests run there; automatic
   * selection checks `adapterInfo.isFallbackAdapter` itself.
   */
  static async open(opts: GpuOptions & { allowFallback?: boolean } = {}): Promise<Gpu> {
    const probe = await probeAdapter(opts);
    if (!probe.ok) throw new WebGpuUnavailableError(probe.reason);
    if (probe.info.isFallbackAdapter && opts.allowFallback === false) {
      throw new WebGpuUnavailableError(
        `only a fallback adapter is available (${probe.info.description})`,
      );
    }
    return await Gpu.fromAdapter(probe.adapter, probe.info);
  }

  /** Opens a device on an adapter from `probeAdapter` (an adapter gives one device). */
  static async fromAdapter(adapter: GPUAdapter, info: AdapterSummary): Promise<Gpu> {
    const lim = adapter.limits;
    // Ask for the adapter's own buffer limits: the defaults (128 MiB per binding)
    // are smaller than one 4096×14336 weight matrix.
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
        maxBufferSize: lim.maxBufferSize,
      },
    });
    return new Gpu(device, info, true);
  }

  /** Wraps a device the caller owns (`destroy` then leaves the device alone). */
  static fromDevice(device: GPUDevice, adapterInfo?: AdapterSummary): Gpu {
    return new Gpu(
      device,
      adapterInfo ?? {
        vendor: "",
        architecture: "",
        device: "",
        description: "caller-provided device",
        isFallbackAdapter: false,
      },
      false,
    );
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** A compute pipeline for `key`, compiled once per device from `wgsl()`. */
  pipeline(key: string, wgsl: () => string): GPUComputePipeline {
    let p = this.#pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ label: key, code: wgsl() });
      p = this.device.createComputePipeline({
        label: key,
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      this.#pipelines.set(key, p);
    }
    return p;
  }

  /** A storage buffer of at least `bytes` kept under `name`, grown on demand. */
  scratch(name: string, bytes: number): GPUBuffer {
    const have = this.#scratch.get(name);
    if (have && have.size >= bytes) return have;
    this.checkBindingSize(`scratch buffer "${name}"`, bytes);
    // Grow by half again so a slowly rising demand does not reallocate every call.
    const max = Math.floor(this.limits.maxStorageBufferBindingSize / 4) * 4;
    const grown = Math.min(max, Math.ceil(((have?.size ?? 0) * 1.5) / 4) * 4);
    const buf = this.device.createBuffer({
      label: `scratch:${name}`,
      size: Math.max(16, Math.ceil(bytes / 4) * 4, grown),
      usage: STORAGE | COPY_SRC | COPY_DST,
    });
    if (have) this.#retired.push(have);
    this.#scratch.set(name, buf);
    return buf;
  }

  /** A small uniform buffer holding `data`; destroy it after the submit that uses it. */
  uniform(data: ArrayBuffer): GPUBuffer {
    const buf = this.device.createBuffer({
      size: Math.ceil(data.byteLength / 16) * 16,
      usage: UNIFORM,
      mappedAtCreation: true,
    });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data));
    buf.unmap();
    return buf;
  }

  /** Submits `encoder` and releases the per-submit buffers it used. */
  submit(encoder: GPUCommandEncoder, transient: GPUBuffer[] = []): void {
    this.device.queue.submit([encoder.finish()]);
    // Destroy after submit is safe: the implementation keeps them alive until the work ends.
    for (const b of transient) b.destroy();
    for (const b of this.#retired) b.destroy();
    this.#retired = [];
  }

  /** Throws an actionable error when a buffer would exceed the per-binding size limit. */
  checkBindingSize(what: string, bytes: number): void {
    const max = this.limits.maxStorageBufferBindingSize;
    if (bytes > max) {
      throw new RangeError(
        `${what} needs ${bytes} bytes, above this device's maxStorageBufferBindingSize ${max}; ` +
          "split the work into smaller batches",
      );
    }
  }

  /** Throws the first error the device reported since the last check. */
  throwIfFailed(): void {
    if (this.#destroyed) throw new Error("use of a destroyed WebGPU context");
    if (this.#error !== null) {
      const msg = this.#error;
      this.#error = null;
      throw new Error(`WebGPU error: ${msg}`);
    }
  }

  /** A resident tensor of `shape`, zero-filled, or filled from `values`. */
  tensor(shape: number | readonly number[], values?: ArrayLike<number>): GpuTensor {
    const dims = typeof shape === "number" ? [shape] : [...shape];
    for (const d of dims) {
      if (!Number.isInteger(d) || d < 0) throw new RangeError(`bad tensor shape [${dims}]`);
    }
    const length = dims.reduce((a, b) => a * b, 1);
    this.checkBindingSize(`a tensor of shape [${dims}]`, length * 4);
    // Bindings need at least 4 bytes, so an empty tensor still gets one float.
    const buffer = this.device.createBuffer({
      size: Math.max(4, length * 4),
      usage: STORAGE | COPY_SRC | COPY_DST,
    });
    const t = new GpuTensor(this, buffer, dims, length);
    if (values !== undefined) t.write(values);
    return t;
  }

  /** Copies `length` floats out of `buffer` once all queued work is done. */
  async readBuffer(buffer: GPUBuffer, length: number): Promise<Float32Array> {
    this.throwIfFailed();
    if (length === 0) return new Float32Array(0);
    const bytes = length * 4;
    const staging = this.device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
    this.submit(enc);
    try {
      await staging.mapAsync(MAP_MODE_READ);
      return new Float32Array(staging.getMappedRange().slice(0));
    } finally {
      staging.destroy();
      this.throwIfFailed();
    }
  }

  /** Resolves when all submitted work has finished. */
  async flush(): Promise<void> {
    this.throwIfFailed();
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfFailed();
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const b of this.#scratch.values()) b.destroy();
    for (const b of this.#retired) b.destroy();
    this.#scratch.clear();
    this.#pipelines.clear();
    if (this.ownsDevice) this.device.destroy();
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }
}

/** A row-major f32 array resident in a GPU storage buffer. */
export class GpuTensor {
  #freed = false;

  constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly length: number,
  ) {}

  /** Overwrites the contents (lengths must match); ordered before later kernels. */
  write(values: ArrayLike<number>): this {
    this.#live();
    if (values.length !== this.length) {
      throw new RangeError(`write: ${values.length} values for a tensor of ${this.length}`);
    }
    if (this.length === 0) return this;
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    this.gpu.device.queue.writeBuffer(
      this.buffer,
      0,
      data.buffer,
      data.byteOffset,
      data.byteLength,
    );
    return this;
  }

  /** A copy of the contents after all queued kernels have run. */
  read(): Promise<Float32Array> {
    this.#live();
    return this.gpu.readBuffer(this.buffer, this.length);
  }

  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.buffer.destroy();
  }

  get freed(): boolean {
    return this.#freed;
  }

  #live(): void {
    if (this.#freed) throw new Error("use of a freed GPU tensor");
  }
}
