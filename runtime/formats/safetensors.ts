/**
 * safetensors reader and writer (https://huggingface.co/docs/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets}, ...,
 * "__metadata__": {str: str}}`, then the tensor bytes. Offsets are relative to the data start
 * and must tile the data exactly (in bounds, no overlap, no holes), as the reference
 * implementation requires. Host-agnostic: bytes in, bytes out.
 */
import { FormatError } from "./errors.ts";
import { decodeBf16, decodeF16, decodeF32, encodeBf16, encodeF16, encodeF32 } from "./half.ts";

/** Same bound as the reference implementation: a larger header is hostile or broken. */
export const MAX_HEADER_BYTES = 100_000_000;

export const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;
export type SafetensorsDType = keyof typeof DTYPE_BYTES;

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** A view into the parsed buffer (no copy): little-endian, possibly unaligned. */
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/** Parses and validates a whole safetensors file; `name` starts every error message. */
export function parseSafetensors(
  bytes: Uint8Array | ArrayBuffer,
  name = "model.safetensors",
): SafetensorsFile {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const fail = (problem: string, tensor?: string): never => {
    throw new FormatError(name, problem, tensor);
  };
  if (buf.length < 8) fail(`truncated: ${buf.length} bytes, no room for the 8-byte header length`);
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    fail(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit: not a safetensors file?`);
  }
  const headerLen = Number(n);
  if (8 + headerLen > buf.length) {
    fail(`truncated: header length ${headerLen} runs past the end of the ${buf.length}-byte file`);
  }
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(8, 8 + headerLen)),
    );
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }
  const dataStart = 8 + headerLen, dataLen = buf.length - dataStart;
  const tensors = new Map<string, SafetensorsTensor>();
  let metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === "__metadata__") {
      metadata = checkMetadata(value, fail);
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== "object" || info === null) {
      fail(`tensor ${key}: entry is not an object`, key);
    }
    const { dtype, shape, data_offsets: offsets } = info;
    if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) {
      fail(
        `tensor ${key}: unknown dtype ${JSON.stringify(dtype)} (known: ${
          Object.keys(DTYPE_BYTES).join(", ")
        })`,
        key,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor ${key}: shape ${JSON.stringify(shape)} is not a list of sizes`, key);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[1] < offsets[0]
    ) {
      fail(`tensor ${key}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`, key);
    }
    const [begin, end] = offsets as number[];
    if (end > dataLen) {
      fail(
        `tensor ${key}: data_offsets [${begin}, ${end}] run past the ${dataLen} data bytes` +
          " (file truncated?)",
        key,
      );
    }
    const dims = shape as number[];
    const dt = dtype as SafetensorsDType;
    const expected = dims.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dt];
    if (end - begin !== expected) {
      fail(
        `tensor ${key}: shape [${dims.join(", ")}] of ${dt} needs ${expected} bytes, ` +
          `data_offsets span ${end - begin}`,
        key,
      );
    }
    spans.push({ name: key, begin, end });
    tensors.set(key, {
      dtype: dt,
      shape: dims,
      data: buf.subarray(dataStart + begin, dataStart + end),
    });
  }
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const s of spans) {
    if (s.begin < covered) {
      const other = spans.find((o) => o !== s && o.end > s.begin && o.begin <= s.begin)!;
      fail(`tensors ${other.name} and ${s.name} overlap (data_offsets)`, s.name);
    }
    if (s.begin > covered) {
      fail(`hole in the data: bytes ${covered}..${s.begin} belong to no tensor`);
    }
    covered = s.end;
  }
  if (covered !== dataLen) {
    fail(`${dataLen - covered} bytes after the last tensor belong to no tensor`);
  }
  return { tensors, metadata };
}

function checkMetadata(value: unknown, fail: (p: string) => never): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail("__metadata__ is not an object");
  }
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== "string") fail(`__metadata__.${k} is not a string`);
  }
  return value as Record<string, string>;
}

/** A tensor widened to f32 (F32, F16, BF16, F64); a fresh array, safe to keep. */
export function tensorToF32(
  t: SafetensorsTensor,
  tensorName = "tensor",
  file = "safetensors",
): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  switch (t.dtype) {
    case "F32":
      return decodeF32(t.data, n);
    case "F16":
      return decodeF16(t.data, n);
    case "BF16":
      return decodeBf16(t.data, n);
    case "F64": {
      const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    }
    default:
      throw new FormatError(
        file,
        `tensor ${tensorName} has dtype ${t.dtype}; weights must be F32, F16, BF16 or F64`,
        tensorName,
      );
  }
}

/** A tensor to write: f32 values narrowed to `dtype`, or raw little-endian bytes. */
export interface SafetensorsInput {
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array | Uint8Array;
}

/**
 * Serializes tensors in the given order. A Float32Array is encoded as `dtype` (F32, F16 or
 * BF16); a Uint8Array is taken as already-encoded bytes. The header is padded with spaces to
 * a multiple of 8 so the data starts 8-byte aligned.
 */
export function writeSafetensors(
  tensors: Map<string, SafetensorsInput> | Record<string, SafetensorsInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new Error(`writeSafetensors: "__metadata__" is reserved`);
    const bytes = encodeTensor(name, t);
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (bytes.length !== expected) {
      throw new Error(
        `writeSafetensors: tensor ${name} has ${bytes.length} bytes, shape [${t.shape}] of ` +
          `${t.dtype} needs ${expected}`,
      );
    }
    header[name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [offset, offset + bytes.length],
    };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const b of blobs) {
    out.set(b, pos);
    pos += b.length;
  }
  return out;
}

function encodeTensor(name: string, t: SafetensorsInput): Uint8Array {
  if (t.data instanceof Uint8Array) return t.data;
  switch (t.dtype) {
    case "F32":
      return encodeF32(t.data);
    case "F16":
      return encodeF16(t.data);
    case "BF16":
      return encodeBf16(t.data);
    default:
      throw new Error(
        `writeSafetensors: tensor ${name}: f32 values can be written as F32, F16 or BF16, ` +
          `not ${t.dtype} (pass encoded bytes instead)`,
      );
  }
}
