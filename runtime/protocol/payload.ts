/**
 * One tensor's payload ↔ f32 values, per codec (DLORA.md §5), on the wasm codec kernels, and the
 * sender's top-k error-feedback residuals. Layouts (little-endian):
 * - f32: n × f32;  f16 / bf16: n × u16;
 * - int8: rows × f32 scale, then rows × cols int8 (rows·cols = n, cols = the last dimension);
 * - topk: varint n | varint k | k × f16 value | k × varint index delta (kernels/codec.ts).
 * Frames carry finite values only: NaN/Inf (and f16/bf16 overflow) are refused when encoding and
 * when decoding, since a non-finite activation or gradient means a diverged step and must travel
 * as an ERROR frame instead.
 */
import {
  bf16ToF32,
  CodecError,
  type CodecErrorReason,
  dequantizeInt8Rows,
  f16ToF32,
  type F32,
  f32ToBf16,
  f32ToF16,
  type Kernels,
  quantizeInt8Rows,
  topkDecode,
  topkEncode,
  topkEncodeWithFeedback,
  topkMaxBytes,
  WasmArray,
} from "../../kernels/mod.ts";
import { ProtocolError, type ProtocolErrorCode } from "./errors.ts";
import type { Codec, MessageType } from "./wire.ts";

/** Bytes of an f32/f16/bf16/int8 payload of `n` values whose last dimension is `cols`; null for topk. */
export function fixedPayloadBytes(codec: Codec, n: number, cols: number): number | null {
  switch (codec) {
    case "f32":
      return 4 * n;
    case "f16":
    case "bf16":
      return 2 * n;
    case "int8":
      return 4 * (n / cols) + n;
    case "topk":
      return null;
  }
}

/** Smallest possible payload of a codec (used to refuse oversize frames before any work). */
export function minPayloadBytes(codec: Codec, n: number, cols: number): number {
  return fixedPayloadBytes(codec, n, cols) ?? 2;
}

/** Index of the first NaN/±Inf in `x`, or −1. */
export function firstNonFinite(x: Float32Array): number {
  for (let i = 0; i < x.length; i++) {
    if (!(Math.abs(x[i]) <= 3.4028234663852886e38)) return i;
  }
  return -1;
}

/** Index of the first 16-bit value whose exponent bits (`expMask`) are all ones, or −1. */
function firstAllOnesExponent(bits: WasmArray<"u16">, expMask: number): number {
  const n = bits.length, b = bits.data;
  // Two values per 32-bit word (wasm allocations are aligned); either half may hold the hit.
  const words = new Uint32Array(b.buffer, b.byteOffset, n >> 1), hi = expMask << 16;
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if ((w & expMask) === expMask || (w & hi) === hi) {
      return (b[2 * i] & expMask) === expMask ? 2 * i : 2 * i + 1;
    }
  }
  return n & 1 && (b[n - 1] & expMask) === expMask ? n - 1 : -1;
}

/** Copies `bytes` into a new wasm array of `dtype` (the byte length must be a whole number of elements). */
function wasmBytes<D extends "u8" | "u16" | "f32">(
  k: Kernels,
  bytes: Uint8Array,
  dtype: D,
): WasmArray<D> {
  const size = dtype === "u8" ? 1 : dtype === "u16" ? 2 : 4;
  const a = k.alloc(bytes.length / size, dtype);
  new Uint8Array(k.memory.buffer, a.ptr, bytes.length).set(bytes);
  return a;
}

/** A wasm array's values in `into`, or in a new array. */
function copyValues(a: F32, into: Float32Array | undefined): Float32Array {
  if (into === undefined) return a.toArray();
  into.set(a.data);
  return into;
}

/** A copy of a wasm array's bytes. */
function copyOut<D extends "u8" | "u16" | "f32">(a: WasmArray<D>, byteLength = a.byteLength) {
  return new Uint8Array(a.kernels.memory.buffer, a.ptr, byteLength).slice();
}

export type TensorData = Float32Array | F32;

/** The data in wasm memory of `k`: the array itself when it already lives there, else a copy. */
function inWasm(k: Kernels, data: TensorData): { arr: F32; owned: boolean } {
  if (data instanceof WasmArray && data.kernels === k) return { arr: data, owned: false };
  const values = data instanceof WasmArray ? data.data : data;
  return { arr: k.from(values), owned: true };
}

/** A view of the values (valid until the next wasm allocation). */
export function valuesOf(data: TensorData): Float32Array {
  return data instanceof WasmArray ? data.data : data;
}

/** Says where in a frame a payload sits, for messages. */
export type Where = string;

function nonFiniteError(where: Where, i: number, v: number, extra = ""): ProtocolError {
  return new ProtocolError(
    "nonfinite",
    `${where}: value ${i} is ${v}${extra}; frames carry finite values only (send an ERROR frame for a diverged step)`,
  );
}

// ---------------------------------------------------------------------------
// Error-feedback residuals (sender side).

/**
 * The top-k error-feedback residuals one sender keeps, one per stream (message type, layer,
 * module — the input group for a group-shared tensor). Keep one per session and direction. A
 * stream's residual restarts at zero when its tensor size changes. Residuals live in wasm memory
 * of the `Kernels` given here; `free()` releases them.
 */
export class TopkFeedback {
  readonly #state = new Map<string, F32>();

  constructor(readonly kernels: Kernels) {}

  static key(type: MessageType, layer: number, module: string): string {
    return `${type}/${layer}/${module}`;
  }

  /** Stream keys with a residual, "GROUP_GRAD/3/q" style. */
  keys(): string[] {
    return [...this.#state.keys()];
  }

  get size(): number {
    return this.#state.size;
  }

  /** A copy of one stream's residual, or undefined when that stream has none yet. */
  residual(type: MessageType, layer: number, module: string): Float32Array | undefined {
    return this.#state.get(TopkFeedback.key(type, layer, module))?.toArray();
  }

  /** A copy of every residual (tests compare these to prove a failed encode changed nothing). */
  snapshot(): Map<string, Float32Array> {
    return new Map([...this.#state].map(([key, r]) => [key, r.toArray()]));
  }

  /**
   * A scratch copy of the stream's residual (zeros for a new stream or a new size) for one encode;
   * it becomes the state only through `commit`, so a failed frame leaves the state unchanged.
   */
  stage(key: string, n: number): F32 {
    const scratch = this.kernels.alloc(n);
    const old = this.#state.get(key);
    if (old && old.length === n) scratch.data.set(old.data);
    else scratch.data.fill(0);
    return scratch;
  }

  /** Makes a staged residual the stream's state. */
  commit(key: string, staged: F32): void {
    this.#state.get(key)?.free();
    this.#state.set(key, staged);
  }

  /** Drops one stream's residual (or all of them). */
  reset(key?: string): void {
    for (const [k, r] of this.#state) {
      if (key === undefined || k === key) {
        r.free();
        this.#state.delete(k);
      }
    }
  }

  free(): void {
    this.reset();
  }
}

// ---------------------------------------------------------------------------
// Encoding.

export interface PayloadRequest {
  codec: Codec;
  data: TensorData;
  n: number;
  cols: number;
  /** top-k entries kept (1..n). */
  kCount: number;
  /** top-k with error feedback: the staged residual (updated in place on success). */
  residual?: F32;
  where: Where;
}

/**
 * The payload bytes of one tensor (a copy, safe across wasm allocations), written into `into`
 * when given (exactly the codec's fixed payload size; not for topk, whose size is known only
 * after encoding). Throws ProtocolError "nonfinite" for NaN/Inf in the input or f16/bf16
 * overflow; nothing outside (but `into`) is changed then.
 */
export function encodePayload(k: Kernels, req: PayloadRequest, into?: Uint8Array): Uint8Array {
  const { codec, n, cols, where } = req;
  const values = valuesOf(req.data);
  const fixed = fixedPayloadBytes(codec, n, cols);
  if (into !== undefined && into.length !== fixed) {
    throw new RangeError(
      `encodePayload: ${codec} payload of ${n} values takes ${fixed ?? "a variable number of"} ` +
        `bytes; the buffer given has ${into.length}`,
    );
  }
  // f16/bf16 carry NaN/Inf as an all-ones exponent: the check on the converted bits finds them.
  if (codec !== "f16" && codec !== "bf16") {
    const bad = firstNonFinite(values);
    if (bad >= 0) throw nonFiniteError(where, bad, values[bad]);
  }
  if (codec === "f32") {
    const bytes = new Uint8Array(values.buffer, values.byteOffset, 4 * n);
    if (into === undefined) return bytes.slice();
    into.set(bytes);
    return into;
  }
  const src = inWasm(k, req.data);
  const scratch: WasmArray<"u8" | "u16" | "f32">[] = [];
  try {
    const x = src.arr;
    if (codec === "f16" || codec === "bf16") {
      const bits = k.alloc(n, "u16");
      scratch.push(bits);
      (codec === "f16" ? f32ToF16 : f32ToBf16)(k, x, bits);
      const bad = firstAllOnesExponent(bits, codec === "f16" ? 0x7c00 : 0x7f80);
      if (bad >= 0) {
        const v = x.data[bad];
        const max = codec === "f16" ? "±65504" : "±3.39e38";
        throw nonFiniteError(
          where,
          bad,
          v,
          Number.isFinite(v) ? ` and overflows ${codec} (max ${max}); use bf16 or f32` : "",
        );
      }
      const out = new Uint8Array(k.memory.buffer, bits.ptr, 2 * n);
      if (into === undefined) return out.slice();
      into.set(out);
      return into;
    }
    if (codec === "int8") {
      const rows = n / cols;
      const q = k.alloc(n, "u8");
      const scales = k.alloc(rows);
      scratch.push(q, scales);
      quantizeInt8Rows(k, x, rows, cols, q, scales);
      // q·scale is computed in f32 on decode: a row whose absmax is within 1 ulp·127 of the f32
      // maximum could come back as ±Inf.
      const s = scales.data;
      for (let r = 0; r < rows; r++) {
        if (!Number.isFinite(Math.fround(127 * s[r]))) {
          throw new ProtocolError(
            "nonfinite",
            `${where}: row ${r} holds a magnitude so close to the f32 maximum (3.4e38) that int8 cannot carry it; use f32 or bf16`,
          );
        }
      }
      const out = into ?? new Uint8Array(4 * rows + n);
      out.set(new Uint8Array(k.memory.buffer, scales.ptr, 4 * rows), 0);
      out.set(new Uint8Array(k.memory.buffer, q.ptr, n), 4 * rows);
      return out;
    }
    if (into !== undefined) throw new RangeError("encodePayload: topk has no fixed size");
    const out = k.alloc(topkMaxBytes(n, req.kCount), "u8");
    scratch.push(out);
    const written = req.residual
      ? topkEncodeWithFeedback(k, x, req.residual, req.kCount, out)
      : topkEncode(k, x, req.kCount, out);
    return copyOut(out, written);
  } catch (e) {
    // x + residual can overflow to Inf even when both are finite.
    if (e instanceof CodecError) throw new ProtocolError("nonfinite", `${where}: ${e.message}`);
    throw e;
  } finally {
    for (const a of scratch) a.free();
    if (src.owned) src.arr.free();
  }
}

// ---------------------------------------------------------------------------
// Decoding.

const CODEC_REASON_CODES: Record<CodecErrorReason, ProtocolErrorCode> = {
  "nonfinite": "nonfinite",
  "value-nonfinite": "nonfinite",
  "header": "bad-payload",
  "n-mismatch": "length-mismatch",
  "k-too-large": "bad-payload",
  "truncated": "length-mismatch",
  "index-varint": "bad-payload",
  "index-range": "bad-payload",
  "not-ascending": "bad-payload",
  "trailing": "length-mismatch",
  "bad-scale": "bad-payload",
  "bad-q": "bad-payload",
};

/**
 * Decodes one payload (already checked to have the codec's length, except topk whose layout the
 * kernel checks) into a new Float32Array of n values, or into `into` (n values; overwritten, also
 * in part when the payload is refused). Throws ProtocolError; `bytes` is only read.
 */
export function decodePayload(
  k: Kernels,
  codec: Codec,
  bytes: Uint8Array,
  n: number,
  cols: number,
  where: Where,
  into?: Float32Array,
): Float32Array {
  if (into !== undefined && into.length !== n) {
    throw new RangeError(`decodePayload: ${n} values do not fit a buffer of ${into.length}`);
  }
  if (codec === "f32") {
    const out = into ?? new Float32Array(n);
    new Uint8Array(out.buffer, out.byteOffset, 4 * n).set(bytes);
    const bits = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i++) {
      if ((bits[i] & 0x7f800000) === 0x7f800000) throw nonFiniteError(where, i, out[i]);
    }
    return out;
  }
  if (codec === "bf16" && bytes.byteOffset % 2 === 0) {
    // Exact widening (the top half of an f32), checked and done in one pass.
    const src = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    const out = into ?? new Float32Array(n);
    const bits = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const b = src[i];
      if ((b & 0x7f80) === 0x7f80) {
        throw nonFiniteError(where, i, b & 0x007f ? NaN : b & 0x8000 ? -Infinity : Infinity);
      }
      bits[i] = b << 16;
    }
    return out;
  }
  const owned: WasmArray<"u8" | "u16" | "f32">[] = [];
  try {
    if (codec === "f16" || codec === "bf16") {
      const src = wasmBytes(k, bytes, "u16");
      owned.push(src);
      const expMask = codec === "f16" ? 0x7c00 : 0x7f80;
      const b = src.data;
      for (let i = 0; i < n; i++) {
        if ((b[i] & expMask) === expMask) {
          const v = (b[i] & (expMask === 0x7c00 ? 0x03ff : 0x007f))
            ? NaN
            : (b[i] & 0x8000 ? -Infinity : Infinity);
          throw nonFiniteError(where, i, v);
        }
      }
      const out = k.alloc(n);
      owned.push(out);
      (codec === "f16" ? f16ToF32 : bf16ToF32)(k, src, out);
      return copyValues(out, into);
    }
    if (codec === "int8") {
      const rows = n / cols;
      const scales = wasmBytes(k, bytes.subarray(0, 4 * rows), "f32");
      owned.push(scales);
      const s = scales.data;
      for (let r = 0; r < rows; r++) {
        if (!Number.isFinite(s[r])) {
          throw new ProtocolError(
            "nonfinite",
            `${where}: int8 scale of row ${r} is ${s[r]}; scales must be finite`,
          );
        }
        if (!Number.isFinite(Math.fround(127 * s[r]))) {
          throw new ProtocolError(
            "nonfinite",
            `${where}: int8 scale of row ${r} is ${s[r]}, so its values would decode to ±Infinity`,
          );
        }
        if (s[r] < 0) {
          throw new ProtocolError(
            "bad-payload",
            `${where}: int8 scale of row ${r} is ${s[r]}; scales must be ≥ 0`,
          );
        }
      }
      const q = wasmBytes(k, bytes.subarray(4 * rows), "u8");
      const out = k.alloc(n);
      owned.push(q, out);
      dequantizeInt8Rows(k, q, scales, rows, cols, out);
      return copyValues(out, into);
    }
    const src = wasmBytes(k, bytes, "u8");
    const out = k.alloc(n);
    owned.push(src, out);
    topkDecode(k, src, bytes.length, n, out);
    return copyValues(out, into);
  } catch (e) {
    if (e instanceof CodecError) {
      throw new ProtocolError(
        CODEC_REASON_CODES[e.reason],
        `${where}: ${codec} payload: ${e.message}`,
      );
    }
    throw e;
  } finally {
    for (const a of owned) a.free();
  }
}
