/**
 * GGUF container reader and writer (llama.cpp's format), independent of any architecture:
 * header (magic "GGUF", version 2 or 3, little-endian), typed metadata key/values, tensor
 * infos (dims in ggml order: dims[0] = ne0 is the fastest-varying, i.e. the columns of a
 * row-major matrix), padding to `general.alignment` (default 32), tensor data.
 * Tensor types F32, F16, BF16, F64 and Q8_0 are decoded; the sizes of the other common ggml
 * types are known so their files still parse (metadata, tokenizer) and fail only on decode.
 */
import { commas, FormatError } from "./errors.ts";
import {
  decodeBf16,
  decodeF16,
  decodeF32,
  encodeBf16,
  encodeF16,
  encodeF32,
  f16BitsToF32,
  f32ToF16Bits,
} from "./half.ts";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types. */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = typeof GgufType[keyof typeof GgufType];

/**
 * A metadata value as JS sees it. Scalars: number (64-bit integers too when they fit in a
 * double exactly, else bigint), boolean, string. Arrays of numbers: the typed array of their
 * element type (UINT32 → Uint32Array, FLOAT32 → Float32Array, UINT64 → BigUint64Array, ...);
 * arrays of strings → string[]; of bools → boolean[]; nested arrays → arrays of arrays.
 */
export type GgufValue =
  | number
  | bigint
  | boolean
  | string
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | string[]
  | boolean[]
  | GgufValue[];

/** The stored type of a value: `itemType` (and `item` for nested arrays) when it is an array. */
export interface GgufTyped {
  type: GgufValueType;
  item?: GgufTyped;
}

/** ggml tensor types this code knows: name, elements per block, bytes per block. */
export const GGML_TYPES: Record<number, { name: string; block: number; bytes: number }> = {
  0: { name: "F32", block: 1, bytes: 4 },
  1: { name: "F16", block: 1, bytes: 2 },
  2: { name: "Q4_0", block: 32, bytes: 18 },
  3: { name: "Q4_1", block: 32, bytes: 20 },
  6: { name: "Q5_0", block: 32, bytes: 22 },
  7: { name: "Q5_1", block: 32, bytes: 24 },
  8: { name: "Q8_0", block: 32, bytes: 34 },
  9: { name: "Q8_1", block: 32, bytes: 36 },
  10: { name: "Q2_K", block: 256, bytes: 84 },
  11: { name: "Q3_K", block: 256, bytes: 110 },
  12: { name: "Q4_K", block: 256, bytes: 144 },
  13: { name: "Q5_K", block: 256, bytes: 176 },
  14: { name: "Q6_K", block: 256, bytes: 210 },
  15: { name: "Q8_K", block: 256, bytes: 292 },
  24: { name: "I8", block: 1, bytes: 1 },
  25: { name: "I16", block: 1, bytes: 2 },
  26: { name: "I32", block: 1, bytes: 4 },
  27: { name: "I64", block: 1, bytes: 8 },
  28: { name: "F64", block: 1, bytes: 8 },
  30: { name: "BF16", block: 1, bytes: 2 },
};
export const GgmlType = { F32: 0, F16: 1, Q8_0: 8, F64: 28, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GgmlType;

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the number of columns of a row-major matrix. */
  dims: number[];
  /** ggml type id (GgmlType). */
  type: number;
  /** "Q8_0", or "type 99" when unknown. */
  typeName: string;
  nElements: number;
  /** Byte offset in the whole file. */
  offset: number;
  /** null when the type's block size is unknown to this reader. */
  byteLength: number | null;
}

export interface GgufFile {
  /** The name errors start with (usually the file name). */
  name: string;
  version: number;
  metadata: Map<string, GgufValue>;
  metadataTypes: Map<string, GgufTyped>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** File offset of the tensor data section. */
  dataOffset: number;
  /** The whole file; tensor data are views into it. */
  bytes: Uint8Array;
}

/** Bounds-checked little-endian cursor; every failure says what it was reading. */
class Reader {
  pos = 0;
  readonly dv: DataView;
  constructor(readonly buf: Uint8Array, readonly name: string) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new FormatError(
        this.name,
        `truncated while reading ${what}: need ${commas(n)} bytes at offset ${
          commas(this.pos)
        }, file has ${commas(this.buf.length)}`,
      );
    }
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A u64 that must be a size or count (fits in a double exactly). */
  count(what: string): number {
    this.need(8, what);
    const v = this.dv.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError(this.name, `${what} is ${v}, far beyond the file size`);
    }
    return Number(v);
  }
  string(what: string): string {
    const n = this.count(`${what} length`);
    this.need(n, what);
    const s = decodeUtf8(this.buf, this.pos, n);
    this.pos += n;
    return s;
  }
}

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true }); // a token may be a lone BOM
function decodeUtf8(buf: Uint8Array, start: number, n: number): string {
  // Tokens are short: decoding them by hand skips TextDecoder's per-call overhead.
  // Anything unusual (invalid or 4-byte sequences) goes to TextDecoder.
  if (n > 64) return utf8.decode(buf.subarray(start, start + n));
  const units: number[] = [];
  for (let i = start, end = start + n; i < end;) {
    const b0 = buf[i];
    if (b0 < 0x80) {
      units.push(b0);
      i++;
    } else if (b0 >= 0xc2 && b0 < 0xe0 && i + 1 < end && (buf[i + 1] & 0xc0) === 0x80) {
      units.push(((b0 & 0x1f) << 6) | (buf[i + 1] & 0x3f));
      i += 2;
    } else if (
      b0 >= 0xe0 && b0 < 0xf0 && i + 2 < end && (buf[i + 1] & 0xc0) === 0x80 &&
      (buf[i + 2] & 0xc0) === 0x80
    ) {
      const c = ((b0 & 0x0f) << 12) | ((buf[i + 1] & 0x3f) << 6) | (buf[i + 2] & 0x3f);
      if (c < 0x800 || (c >= 0xd800 && c < 0xe000)) {
        return utf8.decode(buf.subarray(start, start + n));
      }
      units.push(c);
      i += 3;
    } else {
      return utf8.decode(buf.subarray(start, start + n));
    }
  }
  return String.fromCharCode(...units);
}

const SCALAR_BYTES: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};
const TYPED_ARRAYS = {
  0: Uint8Array,
  1: Int8Array,
  2: Uint16Array,
  3: Int16Array,
  4: Uint32Array,
  5: Int32Array,
  6: Float32Array,
  10: BigUint64Array,
  11: BigInt64Array,
  12: Float64Array,
} as const;

function readValue(r: Reader, type: number, what: string): { value: GgufValue; typed: GgufTyped } {
  const dv = r.dv;
  if (type === GgufType.STRING) return { value: r.string(what), typed: { type } };
  if (type === GgufType.ARRAY) {
    const itemType = r.u32(`${what} array type`);
    const n = r.count(`${what} array length`);
    if (itemType in TYPED_ARRAYS) {
      const size = SCALAR_BYTES[itemType];
      r.need(n * size, `${what} (${commas(n)} array items)`);
      const Ctor = TYPED_ARRAYS[itemType as keyof typeof TYPED_ARRAYS];
      const out = new Ctor(n);
      // Copy the bytes so the typed array is aligned and owns its memory.
      new Uint8Array(out.buffer).set(r.buf.subarray(r.pos, r.pos + n * size));
      r.pos += n * size;
      return { value: out, typed: { type, item: { type: itemType as GgufValueType } } };
    }
    if (itemType === GgufType.BOOL) {
      r.need(n, `${what} (${commas(n)} bools)`);
      const out = Array.from(r.buf.subarray(r.pos, r.pos + n), (b) => b !== 0);
      r.pos += n;
      return { value: out, typed: { type, item: { type: itemType } } };
    }
    if (itemType === GgufType.STRING) {
      // Each string takes ≥ 8 bytes, so a hostile length fails here before allocating.
      r.need(n * 8, `${what} (${commas(n)} strings)`);
      const out: string[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = r.string(`${what}[${i}]`);
      return { value: out, typed: { type, item: { type: itemType } } };
    }
    if (itemType === GgufType.ARRAY) {
      r.need(n * 12, `${what} (${commas(n)} nested arrays)`);
      const out: GgufValue[] = [];
      let item: GgufTyped | undefined;
      for (let i = 0; i < n; i++) {
        const v = readValue(r, GgufType.ARRAY, `${what}[${i}]`);
        out.push(v.value);
        item = v.typed;
      }
      return { value: out, typed: { type, item: item ?? { type: GgufType.ARRAY } } };
    }
    throw new FormatError(r.name, `${what}: unknown array item type ${itemType}`);
  }
  const size = SCALAR_BYTES[type];
  if (size === undefined) throw new FormatError(r.name, `${what}: unknown value type ${type}`);
  r.need(size, what);
  const p = r.pos;
  r.pos += size;
  const typed = { type: type as GgufValueType };
  switch (type) {
    case GgufType.UINT8:
      return { value: dv.getUint8(p), typed };
    case GgufType.INT8:
      return { value: dv.getInt8(p), typed };
    case GgufType.UINT16:
      return { value: dv.getUint16(p, true), typed };
    case GgufType.INT16:
      return { value: dv.getInt16(p, true), typed };
    case GgufType.UINT32:
      return { value: dv.getUint32(p, true), typed };
    case GgufType.INT32:
      return { value: dv.getInt32(p, true), typed };
    case GgufType.FLOAT32:
      return { value: shortestF32(dv.getFloat32(p, true)), typed };
    case GgufType.BOOL:
      return { value: dv.getUint8(p) !== 0, typed };
    case GgufType.UINT64:
      return { value: safeNumber(dv.getBigUint64(p, true)), typed };
    case GgufType.INT64:
      return { value: safeNumber(dv.getBigInt64(p, true)), typed };
    default:
      return { value: dv.getFloat64(p, true), typed };
  }
}

/** The shortest decimal that rounds to the same f32 (1e-5, not 0.000009999999747378752). */
function shortestF32(v: number): number {
  if (!Number.isFinite(v)) return v;
  for (let p = 1; p < 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

function safeNumber(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(v)
    : v;
}

/** Parses the structure of a GGUF file (no tensor is decoded); `name` starts every error. */
export function parseGguf(bytes: Uint8Array | ArrayBuffer, name = "model.gguf"): GgufFile {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const r = new Reader(buf, name);
  const fail = (problem: string, tensor?: string): never => {
    throw new FormatError(name, problem, tensor);
  };
  const magic = r.u32("the magic");
  if (magic !== GGUF_MAGIC) {
    const shown = Array.from(buf.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
    fail(`not a GGUF file: magic is ${shown}, expected 47 47 55 46 ("GGUF")`);
  }
  const version = r.u32("the version");
  if (version !== 2 && version !== 3) {
    if ((version & 0xffff) === 0 && version !== 0) {
      fail(`big-endian GGUF files are not supported`);
    }
    fail(`GGUF version ${version} is not supported (versions 2 and 3 are)`);
  }
  const nTensors = r.count("the tensor count");
  const nKv = r.count("the metadata count");
  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, GgufTyped>();
  for (let i = 0; i < nKv; i++) {
    const key = r.string(`metadata key #${i}`);
    const type = r.u32(`the type of metadata ${key}`);
    const { value, typed } = readValue(r, type, `metadata ${key}`);
    if (metadata.has(key)) fail(`metadata key ${key} appears twice`);
    metadata.set(key, value);
    metadataTypes.set(key, typed);
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  if (metadata.has("general.alignment")) {
    const a = metadata.get("general.alignment");
    if (typeof a !== "number" || a <= 0 || (a & (a - 1)) !== 0) {
      fail(`general.alignment ${a} is not a positive power of two`);
    }
    alignment = a as number;
  }
  const tensors: GgufTensorInfo[] = [];
  const relOffsets: number[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const tname = r.string(`tensor info #${i} name`);
    const nDims = r.u32(`tensor ${tname} dimension count`);
    if (nDims < 1 || nDims > 4) {
      fail(`tensor ${tname} has ${nDims} dimensions (1 to 4 allowed)`, tname);
    }
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.count(`tensor ${tname} dims`));
    const type = r.u32(`tensor ${tname} type`);
    const offset = r.count(`tensor ${tname} offset`);
    if (names.has(tname)) fail(`tensor ${tname} appears twice`, tname);
    names.add(tname);
    const nElements = dims.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(nElements)) {
      fail(`tensor ${tname} dims [${dims}] are too large`, tname);
    }
    const t = GGML_TYPES[type];
    let byteLength: number | null = null;
    if (t) {
      if (dims[0] % t.block !== 0) {
        fail(
          `tensor ${tname}: ${t.name} needs a row length divisible by ${t.block}, dims[0] is ${
            dims[0]
          }`,
          tname,
        );
      }
      byteLength = (nElements / t.block) * t.bytes;
    }
    if (offset % alignment !== 0) {
      fail(`tensor ${tname} data offset ${offset} is not a multiple of the alignment ${alignment}`);
    }
    tensors.push({
      name: tname,
      dims,
      type,
      typeName: t?.name ?? `type ${type}`,
      nElements,
      offset: 0,
      byteLength,
    });
    relOffsets.push(offset);
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  if (nTensors > 0 && dataOffset > buf.length) {
    fail(
      `truncated: tensor data would start at ${commas(dataOffset)}, file has ${commas(buf.length)}`,
    );
  }
  const spans: { t: GgufTensorInfo; end: number }[] = [];
  tensors.forEach((t, i) => {
    t.offset = dataOffset + relOffsets[i];
    if (t.byteLength === null) return;
    const end = t.offset + t.byteLength;
    if (end > buf.length) {
      fail(
        `truncated: tensor ${t.name} (${t.typeName} [${t.dims.join(", ")}]) spans bytes ${
          commas(t.offset)
        }..${commas(end)}, file has ${commas(buf.length)}`,
        t.name,
      );
    }
    spans.push({ t, end });
  });
  spans.sort((a, b) => a.t.offset - b.t.offset);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].t.offset < spans[i - 1].end) {
      fail(`tensors ${spans[i - 1].t.name} and ${spans[i].t.name} overlap`, spans[i].t.name);
    }
  }
  return { name, version, metadata, metadataTypes, tensors, alignment, dataOffset, bytes: buf };
}

/** The raw bytes of one tensor (a view). */
export function ggufTensorBytes(file: GgufFile, t: GgufTensorInfo): Uint8Array {
  if (t.byteLength === null) {
    throw new FormatError(
      file.name,
      `tensor ${t.name} has unknown ggml type id ${t.type}; cannot locate its data`,
      t.name,
    );
  }
  return file.bytes.subarray(t.offset, t.offset + t.byteLength);
}

/** Decodes (dequantizes) one tensor to f32; unsupported types fail naming tensor and type. */
export function ggufTensorToF32(file: GgufFile, t: GgufTensorInfo): Float32Array {
  const supported = ["F32", "F16", "BF16", "F64", "Q8_0"];
  if (!supported.includes(t.typeName)) {
    throw new FormatError(
      file.name,
      `tensor ${t.name} has ggml type ${t.typeName}${
        GGML_TYPES[t.type] ? ` (id ${t.type})` : " (unknown id)"
      }, which this loader cannot decode (supported: ${supported.join(", ")})`,
      t.name,
    );
  }
  const bytes = ggufTensorBytes(file, t);
  switch (t.typeName) {
    case "F32":
      return decodeF32(bytes, t.nElements);
    case "F16":
      return decodeF16(bytes, t.nElements);
    case "BF16":
      return decodeBf16(bytes, t.nElements);
    case "F64": {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return Float32Array.from({ length: t.nElements }, (_, i) => dv.getFloat64(8 * i, true));
    }
    default:
      return dequantizeQ8_0(bytes, t.nElements);
  }
}

/** Q8_0: blocks of 32 values stored as an f16 scale d and 32 int8 q; x = d·q. */
export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  if (n % 32 !== 0 || bytes.length < (n / 32) * 34) {
    throw new RangeError(`Q8_0: ${n} values need ${(n / 32) * 34} bytes, got ${bytes.length}`);
  }
  const out = new Float32Array(n);
  for (let b = 0, p = 0; b < n / 32; b++, p += 34) {
    const d = f16BitsToF32(bytes[p] | (bytes[p + 1] << 8));
    for (let j = 0; j < 32; j++) out[b * 32 + j] = d * ((bytes[p + 2 + j] << 24) >> 24);
  }
  return out;
}

/** Quantizes to Q8_0 exactly as ggml's reference (d = max|x|/127, q = round(x/d)). */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  const n = values.length;
  if (n % 32 !== 0) throw new RangeError(`Q8_0: ${n} values is not a multiple of 32`);
  const out = new Uint8Array((n / 32) * 34);
  for (let b = 0, p = 0; b < n / 32; b++, p += 34) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[b * 32 + j]));
    const d = Math.fround(amax / 127), id = d ? Math.fround(1 / d) : 0;
    const h = f32ToF16Bits(d);
    out[p] = h & 0xff;
    out[p + 1] = h >>> 8;
    for (let j = 0; j < 32; j++) {
      const x = Math.fround(values[b * 32 + j] * id);
      out[p + 2 + j] = (Math.sign(x) * Math.round(Math.abs(x))) & 0xff; // roundf: half away from 0
    }
  }
  return out;
}

/** Encodes f32 values as a ggml tensor type the writer supports. */
export function encodeGgmlTensor(values: Float32Array, type: GgmlTypeName): Uint8Array {
  switch (type) {
    case "F32":
      return encodeF32(values);
    case "F16":
      return encodeF16(values);
    case "BF16":
      return encodeBf16(values);
    case "Q8_0":
      return quantizeQ8_0(values);
    case "F64": {
      const out = new Uint8Array(values.length * 8), dv = new DataView(out.buffer);
      values.forEach((v, i) => dv.setFloat64(8 * i, v, true));
      return out;
    }
  }
}

export interface GgufTensorInput {
  name: string;
  /** ggml order (dims[0] = columns). */
  dims: number[];
  type: number;
  /** Already encoded in `type`. */
  data: Uint8Array;
}

export interface GgufWriteInput {
  metadata: Map<string, GgufValue>;
  /** Stored types; a key without one gets an inferred type (see inferType). */
  types?: Map<string, GgufTyped>;
  tensors: GgufTensorInput[];
  version?: 2 | 3;
}

/** Serializes a GGUF file. Alignment comes from metadata general.alignment (default 32). */
export function encodeGguf(input: GgufWriteInput): Uint8Array {
  const align = Number(input.metadata.get("general.alignment") ?? GGUF_DEFAULT_ALIGNMENT);
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(input.version ?? 3);
  w.u64(input.tensors.length);
  w.u64(input.metadata.size);
  for (const [key, value] of input.metadata) {
    const typed = input.types?.get(key) ?? inferType(key, value);
    w.string(key);
    w.u32(typed.type);
    writeValue(w, value, typed, key);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of input.tensors) {
    const info = GGML_TYPES[t.type];
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (!info) throw new Error(`encodeGguf: tensor ${t.name}: unknown ggml type ${t.type}`);
    if (t.data.length !== (n / info.block) * info.bytes) {
      throw new Error(
        `encodeGguf: tensor ${t.name}: ${t.data.length} bytes for ${info.name} [${t.dims}]`,
      );
    }
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offsets.push(offset);
    offset = Math.ceil((offset + t.data.length) / align) * align;
  }
  const head = w.finish();
  const dataStart = Math.ceil(head.length / align) * align;
  const end = input.tensors.length
    ? dataStart + offsets[offsets.length - 1] + input.tensors[input.tensors.length - 1].data.length
    : head.length;
  const out = new Uint8Array(end);
  out.set(head);
  input.tensors.forEach((t, i) => out.set(t.data, dataStart + offsets[i]));
  return out;
}

/**
 * The type a value is written with when none is given: integers ≥ 0 → UINT32 (UINT64 past
 * 2^32), negative → INT32 (INT64 past -2^31), other numbers → FLOAT32, bigint → UINT64/INT64,
 * typed arrays by class, number[] → INT32 or FLOAT32.
 */
export function inferType(key: string, value: GgufValue): GgufTyped {
  if (typeof value === "string") return { type: GgufType.STRING };
  if (typeof value === "boolean") return { type: GgufType.BOOL };
  if (typeof value === "bigint") return { type: value >= 0n ? GgufType.UINT64 : GgufType.INT64 };
  if (typeof value === "number") {
    if (!Number.isInteger(value)) return { type: GgufType.FLOAT32 };
    if (value >= 0) return { type: value < 2 ** 32 ? GgufType.UINT32 : GgufType.UINT64 };
    return { type: value >= -(2 ** 31) ? GgufType.INT32 : GgufType.INT64 };
  }
  const arr = (item: GgufValueType): GgufTyped => ({ type: GgufType.ARRAY, item: { type: item } });
  for (const [t, Ctor] of Object.entries(TYPED_ARRAYS)) {
    if (value instanceof Ctor) return arr(Number(t) as GgufValueType);
  }
  const a = value as unknown[];
  if (a.length === 0 || typeof a[0] === "string") return arr(GgufType.STRING);
  if (typeof a[0] === "boolean") return arr(GgufType.BOOL);
  if (typeof a[0] === "number") {
    return arr((a as number[]).every(Number.isInteger) ? GgufType.INT32 : GgufType.FLOAT32);
  }
  if (typeof a[0] === "object") {
    return { type: GgufType.ARRAY, item: inferType(key, a[0] as GgufValue) };
  }
  throw new Error(`GGUF metadata ${key}: cannot infer a type for ${String(a[0])}`);
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function writeValue(w: ByteWriter, value: GgufValue, typed: GgufTyped, key: string): void {
  const bad = () => new Error(`GGUF metadata ${key}: value does not match type ${typed.type}`);
  if (typed.type === GgufType.ARRAY) {
    const item = typed.item ?? inferType(key, value).item!;
    if (typeof value !== "object") throw bad();
    const items = value as ArrayLike<GgufValue>;
    w.u32(item.type);
    w.u64(items.length);
    const Ctor = TYPED_ARRAYS[item.type as keyof typeof TYPED_ARRAYS];
    if (Ctor && value instanceof Ctor && littleEndian) {
      return w.bytes(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    }
    for (let i = 0; i < items.length; i++) writeValue(w, items[i], item, key);
    return;
  }
  if (typed.type === GgufType.STRING) {
    if (typeof value !== "string") throw bad();
    return w.string(value);
  }
  if (typed.type === GgufType.BOOL) return w.u8(value ? 1 : 0);
  if (typeof value !== "number" && typeof value !== "bigint") throw bad();
  w.scalar(typed.type, value);
}

const utf8Encoder = new TextEncoder();

/** Growable little-endian byte buffer for headers and metadata. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private dv = new DataView(this.buf.buffer);
  private pos = 0;
  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.reserve(1);
    this.buf[this.pos++] = v;
  }
  u32(v: number): void {
    this.reserve(4);
    this.dv.setUint32(this.pos, v, true);
    this.pos += 4;
  }
  u64(v: number): void {
    this.reserve(8);
    this.dv.setBigUint64(this.pos, BigInt(v), true);
    this.pos += 8;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  string(s: string): void {
    // Encode straight into the buffer after a length slot, then fill the length in.
    this.reserve(8 + 3 * s.length);
    const { written } = utf8Encoder.encodeInto(s, this.buf.subarray(this.pos + 8));
    this.dv.setBigUint64(this.pos, BigInt(written), true);
    this.pos += 8 + written;
  }
  scalar(type: number, v: number | bigint): void {
    const size = SCALAR_BYTES[type];
    this.reserve(size);
    const p = this.pos, dv = this.dv;
    switch (type) {
      case GgufType.UINT8:
        dv.setUint8(p, Number(v));
        break;
      case GgufType.INT8:
        dv.setInt8(p, Number(v));
        break;
      case GgufType.UINT16:
        dv.setUint16(p, Number(v), true);
        break;
      case GgufType.INT16:
        dv.setInt16(p, Number(v), true);
        break;
      case GgufType.UINT32:
        dv.setUint32(p, Number(v), true);
        break;
      case GgufType.INT32:
        dv.setInt32(p, Number(v), true);
        break;
      case GgufType.FLOAT32:
        dv.setFloat32(p, Number(v), true);
        break;
      case GgufType.UINT64:
        dv.setBigUint64(p, BigInt(v), true);
        break;
      case GgufType.INT64:
        dv.setBigInt64(p, BigInt(v), true);
        break;
      case GgufType.FLOAT64:
        dv.setFloat64(p, Number(v), true);
        break;
      default:
        throw new Error(`GGUF: cannot write a scalar of type ${type}`);
    }
    this.pos += size;
  }
  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}
