/**
 * The versioned binary frame of the step stream (DLORA.md §2, §5; byte tables in README.md):
 * a fixed 32-byte header, then a body — tensors with per-tensor sub-headers for the hidden-state,
 * activation and gradient messages, a small fixed body for the control messages. Decoding
 * validates everything before returning and never changes the caller's bytes or any encoder
 * state; every refusal is a ProtocolError.
 */
import type { Kernels } from "../../kernels/mod.ts";
import { crc32Update } from "./crc32.ts";
import {
  formatBytes,
  type FrameRef,
  PROTOCOL_ERROR_CODES,
  ProtocolError,
  type ProtocolErrorCode,
  protocolErrorName,
} from "./errors.ts";
import {
  decodePayload,
  encodePayload,
  fixedPayloadBytes,
  minPayloadBytes,
  type TensorData,
  TopkFeedback,
  valuesOf,
} from "./payload.ts";
import {
  type Codec,
  codecAllowed,
  codecOf,
  CODECS,
  type ControlMessageType,
  FLAG_CRC,
  FLAG_NO_DX,
  groupOf,
  HEADER_BYTES,
  isTensorType,
  type Limits,
  MAGIC,
  maskOf,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_RANK,
  MESSAGE_DIRECTION,
  MESSAGE_TYPES,
  type MessageType,
  messageTypeOf,
  moduleBit,
  modulesOf,
  NO_MODULE,
  OFF,
  type Proj,
  PROTOCOL_VERSION,
  resolveLimits,
  type Role,
  sendDirection,
  TENSOR_LAYOUT,
  type TensorMessageType,
} from "./wire.ts";
import { PROJS } from "../model/modules.ts";
import {
  decodeControlJson,
  encodeControlJson,
  type ScoresMessage,
  type SelectMessage,
} from "./control.ts";

// ---------------------------------------------------------------------------
// Frame shapes.

export interface FrameHeader {
  version: number;
  type: MessageType;
  session: number;
  step: number;
  layer: number;
  /** Micro-batch index within the step (pipelined micro-batches). */
  micro: number;
  /** The projections the frame is about (empty for hidden states and control messages). */
  modules: Proj[];
  /** Whether the frame carried (and passed) a CRC-32. */
  crc: boolean;
  /** GROUP_GRAD only, present when set: no ∂X_lora is wanted back (FLAG_NO_DX). */
  noDx?: true;
  /** Bytes of the whole frame. */
  byteLength: number;
}

export interface DecodedTensor {
  /** The projection, or null for a tensor shared by the frame's modules (or with none). */
  module: Proj | null;
  codec: Codec;
  shape: number[];
  data: Float32Array;
  /** Payload bytes on the wire (sub-header and padding excluded). */
  payloadBytes: number;
}

export interface Hello {
  role: Role;
  /** Protocol versions the sender speaks; HELLO is written at `minVersion`. */
  minVersion: number;
  maxVersion: number;
  /** Codecs the sender accepts. */
  codecs: Codec[];
  /** Largest frame the sender accepts. */
  maxFrameBytes: number;
}

export type TensorFrame = FrameHeader & { type: TensorMessageType; tensors: DecodedTensor[] };
export type HelloFrame = FrameHeader & { type: "HELLO"; hello: Hello };
export type PingFrame = FrameHeader & { type: "PING" | "PONG"; nonce: number; padding: Uint8Array };
export type AckFrame = FrameHeader & { type: "ACK"; acked: MessageType };
export type StepEndFrame = FrameHeader & { type: "STEP_END" };
export type ErrorFrame = FrameHeader & {
  type: "ERROR";
  /** Wire code: a ProtocolError code (1–99) or an application code. */
  code: number;
  /** The ProtocolError code name, or null for an application code. */
  name: ProtocolErrorCode | null;
  message: string;
};
export type SelectFrame = FrameHeader & { type: "SELECT"; select: SelectMessage };
export type ScoresFrame = FrameHeader & { type: "SCORES"; scores: ScoresMessage };
export type Frame =
  | TensorFrame
  | HelloFrame
  | PingFrame
  | AckFrame
  | StepEndFrame
  | ErrorFrame
  | SelectFrame
  | ScoresFrame;

/** Where a frame is in the step; layer and micro default to 0. */
export interface FrameFields {
  session: number;
  step: number;
  layer?: number;
  micro?: number;
}

export interface TensorInput {
  /** The projection ("each" layouts: ΔY, G); omit for a shared tensor (h0, hL, ∂L/∂hL, X, ∂X_lora). */
  module?: Proj;
  data: TensorData;
  /** Row-major dimensions, rank 1–4, each ≥ 1; the last one is the int8 row length. */
  shape: readonly number[];
  /** Default: the EncodeOptions codec, else f32. */
  codec?: Codec;
  /** top-k: entries kept (default ⌈topkRatio·n⌉). */
  k?: number;
}

export interface TensorFrameInput extends FrameFields {
  type: TensorMessageType;
  /** GROUP_GRAD only: ask for no ∂X_lora back (FLAG_NO_DX). */
  noDx?: boolean;
  /** Required for GROUP_INPUT / GRAD_X_LORA; for DELTA_Y / GROUP_GRAD the tensors' modules. */
  modules?: readonly Proj[];
  tensors: readonly TensorInput[];
}

export type ControlFrameInput =
  & FrameFields
  & (
    | { type: "HELLO"; hello: Hello }
    | { type: "PING" | "PONG"; nonce: number; padding?: Uint8Array }
    | { type: "ACK"; acked: MessageType }
    | { type: "STEP_END" }
    | { type: "ERROR"; code: number; message: string }
    | { type: "SELECT"; select: SelectMessage }
    | { type: "SCORES"; scores: ScoresMessage }
  );

export interface EncodeOptions {
  /** Write a CRC-32 of the frame (default true). */
  crc?: boolean;
  limits?: Partial<Limits>;
  /** Default codec of tensors that name none (default f32). */
  codec?: Codec;
  /** top-k error feedback: the sender's residuals (updated only when the frame is built). */
  feedback?: TopkFeedback;
  /** top-k: fraction of entries kept when a tensor gives no k (default 0.01, at least 1). */
  topkRatio?: number;
}

export interface DecodeOptions {
  limits?: Partial<Limits>;
  /** The sender's role: a frame type it may not send is refused ("wrong-direction"). */
  from?: Role;
  /**
   * Decode the tensors into these reused buffers instead of new arrays: the values then stay
   * valid only until the second-next decode with the same `DecodeBuffers`.
   */
  buffers?: DecodeBuffers;
}

/**
 * Output buffers that a stream of decodes reuses (two generations, alternating), so a receiver
 * that consumes each frame's values before the next but one arrives allocates nothing per frame.
 */
export class DecodeBuffers {
  readonly #generations: Float32Array[][] = [[], []];
  #turn = 0;

  /** Starts the next frame's generation. */
  next(): void {
    this.#turn ^= 1;
  }

  /** Tensor i's output of n values in the current generation. */
  take(i: number, n: number): Float32Array {
    const gen = this.#generations[this.#turn];
    let b = gen[i];
    if (b === undefined || b.length < n) {
      b = new Float32Array(n);
      gen[i] = b;
    }
    return b.length === n ? b : b.subarray(0, n);
  }
}

const MAGIC_BYTES = new TextEncoder().encode(MAGIC);
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
if (!HOST_LE) throw new Error("runtime/protocol needs a little-endian host (as WebAssembly is)");

const ROLE_IDS: Record<Role, number> = { device: 1, coordinator: 2 };

function pad4(n: number): number {
  return (4 - (n & 3)) & 3;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// ---------------------------------------------------------------------------
// Header.

interface RawHeader {
  version: number;
  type: MessageType;
  flags: number;
  mask: number;
  session: number;
  step: number;
  layer: number;
  micro: number;
  tensorCount: number;
  bodyLength: number;
  crc: number;
}

function refOf(h: RawHeader): FrameRef {
  return { type: h.type, session: h.session, step: h.step, layer: h.layer, micro: h.micro };
}

/** Refuses bytes that do not start like a frame (judging only the bytes present). */
function checkMagic(bytes: Uint8Array): void {
  const have = Math.min(bytes.length, 4);
  for (let i = 0; i < have; i++) {
    if (bytes[i] !== MAGIC_BYTES[i]) {
      const got = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
      throw new ProtocolError(
        "bad-magic",
        `not a DLoRA frame: it starts with bytes ${got}, expected "${MAGIC}" (44 4c 52 41)`,
      );
    }
  }
}

/**
 * Reads and checks the fixed header: magic, version, type, flags and reserved bytes, and that
 * the declared frame fits the limit. `bytes` may hold only a prefix of the frame (≥ 32 bytes).
 */
function readHeader(bytes: Uint8Array, limits: Limits): RawHeader {
  checkMagic(bytes);
  if (bytes.length < HEADER_BYTES) {
    throw new ProtocolError(
      "truncated",
      `frame truncated: ${bytes.length} bytes, the header alone is ${HEADER_BYTES}`,
    );
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const version = v.getUint8(OFF.version);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      "bad-version",
      `frame is protocol version ${version}; this build speaks version ${PROTOCOL_VERSION}`,
    );
  }
  const typeId = v.getUint8(OFF.type);
  const type = messageTypeOf(typeId);
  if (type === null) {
    throw new ProtocolError("unknown-type", `unknown message type ${typeId}`);
  }
  const h: RawHeader = {
    version,
    type,
    flags: v.getUint8(OFF.flags),
    mask: v.getUint8(OFF.modules),
    session: v.getUint32(OFF.session, true),
    step: v.getUint32(OFF.step, true),
    layer: v.getUint16(OFF.layer, true),
    micro: v.getUint16(OFF.micro, true),
    tensorCount: v.getUint8(OFF.tensorCount),
    bodyLength: v.getUint32(OFF.bodyLength, true),
    crc: v.getUint32(OFF.crc, true),
  };
  const ref = refOf(h);
  if (h.flags & ~(FLAG_CRC | FLAG_NO_DX)) {
    throw new ProtocolError(
      "bad-flags",
      `${type} frame has unknown flag bits 0x${(h.flags & ~(FLAG_CRC | FLAG_NO_DX)).toString(16)}`,
      ref,
    );
  }
  if (h.flags & FLAG_NO_DX && type !== "GROUP_GRAD") {
    throw new ProtocolError(
      "bad-flags",
      `${type} frame sets the no-∂X flag (0x02), which only GROUP_GRAD may carry`,
      ref,
    );
  }
  if (bytes[OFF.reserved] | bytes[OFF.reserved + 1] | bytes[OFF.reserved + 2]) {
    throw new ProtocolError(
      "bad-flags",
      `${type} frame has non-zero reserved header bytes 21–23`,
      ref,
    );
  }
  if (!(h.flags & FLAG_CRC) && h.crc !== 0) {
    throw new ProtocolError(
      "bad-flags",
      `${type} frame has a CRC value but its CRC flag is off (corrupted flags?)`,
      ref,
    );
  }
  if (h.mask & 0x80) {
    throw new ProtocolError(
      "bad-modules",
      `${type} frame sets module bit 7; only bits 0–6 (q…down) exist`,
      ref,
    );
  }
  const total = HEADER_BYTES + h.bodyLength;
  if (total > limits.maxFrameBytes) {
    throw new ProtocolError(
      "too-large",
      `frame too large: ${formatBytes(total)} > ${
        formatBytes(limits.maxFrameBytes)
      } limit (${type})`,
      ref,
    );
  }
  return h;
}

/**
 * The total byte length of the frame that `prefix` starts, once its 32-byte header has arrived
 * (null before); for reading frames off a byte stream. Throws ProtocolError on a bad header.
 */
export function frameLength(prefix: Uint8Array, limits?: Partial<Limits>): number | null {
  if (prefix.length < HEADER_BYTES) {
    checkMagic(prefix); // only the magic can be judged so far
    return null;
  }
  return HEADER_BYTES + readHeader(prefix, resolveLimits(limits)).bodyLength;
}

/** The checked header of a whole frame, without decoding its body (for routing). */
export function decodeHeader(bytes: Uint8Array, opts: DecodeOptions = {}): FrameHeader {
  const h = readHeader(bytes, resolveLimits(opts.limits));
  checkWhole(bytes, h);
  return publicHeader(h);
}

function publicHeader(h: RawHeader): FrameHeader {
  return {
    version: h.version,
    type: h.type,
    session: h.session,
    step: h.step,
    layer: h.layer,
    micro: h.micro,
    modules: modulesOf(h.mask),
    crc: (h.flags & FLAG_CRC) !== 0,
    ...(h.flags & FLAG_NO_DX ? { noDx: true as const } : {}),
    byteLength: HEADER_BYTES + h.bodyLength,
  };
}

/** Length against the buffer, then the CRC. */
function checkWhole(bytes: Uint8Array, h: RawHeader): void {
  const total = HEADER_BYTES + h.bodyLength;
  if (bytes.length < total) {
    throw new ProtocolError(
      "truncated",
      `${h.type} frame truncated: ${bytes.length} of ${total} bytes arrived`,
      refOf(h),
    );
  }
  if (bytes.length > total) {
    throw new ProtocolError(
      "trailing",
      `${h.type} frame is ${total} bytes but ${
        bytes.length - total
      } more follow it (two frames in one message?)`,
      refOf(h),
    );
  }
  if (h.flags & FLAG_CRC) {
    const got = frameCrc(bytes);
    if (got !== h.crc) {
      throw new ProtocolError(
        "crc-mismatch",
        `${h.type} frame is corrupted: CRC-32 is 0x${hex(got)}, the header says 0x${hex(h.crc)}`,
        refOf(h),
      );
    }
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}

const ZERO4 = new Uint8Array(4);
/** CRC-32 of the whole frame with its crc field read as zero. */
export function frameCrc(frame: Uint8Array): number {
  let c = crc32Update(0, frame, 0, OFF.crc);
  c = crc32Update(c, ZERO4);
  return crc32Update(c, frame, OFF.crc + 4, frame.length);
}

// ---------------------------------------------------------------------------
// Decoding.

/**
 * Decodes one whole frame. Every value is checked (see README.md); a refusal throws
 * ProtocolError (with `frame` set once the header was readable) and changes nothing.
 */
export function decodeFrame(k: Kernels, bytes: Uint8Array, opts: DecodeOptions = {}): Frame {
  const limits = resolveLimits(opts.limits);
  const h = readHeader(bytes, limits);
  const ref = refOf(h);
  checkWhole(bytes, h);
  if (opts.from) {
    const allowed = MESSAGE_DIRECTION[h.type];
    if (allowed !== "both" && allowed !== sendDirection(opts.from)) {
      throw new ProtocolError(
        "wrong-direction",
        `${h.type} is sent ${
          allowed === "up" ? "by devices" : "by the coordinator"
        }, not by a ${opts.from}`,
        ref,
      );
    }
  }
  const header = publicHeader(h);
  const body = bytes.subarray(HEADER_BYTES);
  try {
    if (isTensorType(h.type)) {
      opts.buffers?.next();
      return {
        ...header,
        type: h.type,
        tensors: decodeTensors(k, h, body, limits, opts.buffers),
      };
    }
    return decodeControl(h, header, body);
  } catch (e) {
    if (e instanceof ProtocolError && !e.frame) throw new ProtocolError(e.code, e.message, ref);
    throw e;
  }
}

function expectedTensorCount(type: TensorMessageType, mask: number): number {
  return TENSOR_LAYOUT[type] === "each" ? modulesOf(mask).length : 1;
}

function checkModules(type: TensorMessageType, mask: number, fail: (m: string) => never): void {
  const layout = TENSOR_LAYOUT[type];
  if (layout === "none") {
    if (mask !== 0) {
      fail(`${type} belongs to no module, but the frame names ${modulesOf(mask).join(",")}`);
    }
    return;
  }
  if (mask === 0) fail(`${type} must name the modules of its group, but names none`);
  if (groupOf(mask) === null) {
    fail(
      `${type} names ${
        modulesOf(mask).join(",")
      }, which span several input groups (q,k,v | o | gate,up | down)`,
    );
  }
}

interface ParsedTensor {
  module: Proj | null;
  codec: Codec;
  shape: number[];
  n: number;
  payload: Uint8Array;
}

function decodeTensors(
  k: Kernels,
  h: RawHeader,
  body: Uint8Array,
  limits: Limits,
  buffers?: DecodeBuffers,
): DecodedTensor[] {
  const type = h.type as TensorMessageType;
  checkModules(type, h.mask, (m) => {
    throw new ProtocolError("bad-modules", m);
  });
  const want = expectedTensorCount(type, h.mask);
  if (h.tensorCount !== want) {
    throw new ProtocolError(
      "bad-tensors",
      `${type} with modules [${
        modulesOf(h.mask)
      }] carries ${want} tensor(s), the header says ${h.tensorCount}`,
    );
  }
  const eachModules = TENSOR_LAYOUT[type] === "each" ? modulesOf(h.mask) : null;
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const parsed: ParsedTensor[] = [];
  let p = 0;
  let elements = 0;
  // Pass 1: every sub-header and length, before any allocation or decoding.
  for (let t = 0; t < h.tensorCount; t++) {
    const where = `${type} tensor ${t}`;
    if (p + 8 > body.length) {
      throw new ProtocolError("truncated", `${where}: sub-header runs past the end of the frame`);
    }
    const moduleId = v.getUint8(p);
    const codecId = v.getUint8(p + 1);
    const rank = v.getUint8(p + 2);
    if (v.getUint8(p + 3) !== 0) {
      throw new ProtocolError("bad-flags", `${where}: reserved byte is not zero`);
    }
    const expectModule = eachModules ? moduleBit(eachModules[t]) : 0;
    const module = moduleId === NO_MODULE ? null : PROJS[moduleId] ?? undefined;
    if (module === undefined) {
      throw new ProtocolError("bad-modules", `${where}: unknown module id ${moduleId}`);
    }
    if ((module === null ? 0 : moduleBit(module)) !== expectModule) {
      const expected = eachModules ? eachModules[t] : "none (a shared tensor)";
      throw new ProtocolError(
        "bad-modules",
        `${where}: module is ${module ?? "none"}, expected ${expected}`,
      );
    }
    const codec = codecOf(codecId);
    if (codec === null) {
      throw new ProtocolError("unknown-codec", `${where}: unknown codec ${codecId}`);
    }
    if (!codecAllowed(type, codec)) {
      throw new ProtocolError(
        "codec-not-allowed",
        `${where}: ${codec} is for gradients only, not ${type}`,
      );
    }
    if (rank < 1 || rank > MAX_RANK) {
      throw new ProtocolError("bad-shape", `${where}: rank ${rank} is outside 1..${MAX_RANK}`);
    }
    const end = p + 8 + 4 * rank;
    if (end > body.length) {
      throw new ProtocolError("truncated", `${where}: sub-header runs past the end of the frame`);
    }
    const shape: number[] = [];
    let n = 1;
    for (let d = 0; d < rank; d++) {
      const dim = v.getUint32(p + 4 + 4 * d, true);
      if (dim === 0) throw new ProtocolError("bad-shape", `${where}: dimension ${d} is 0`);
      shape.push(dim);
      n *= dim;
    }
    elements += n;
    if (elements > limits.maxElements) {
      throw new ProtocolError(
        "bad-shape",
        `${where}: shape [${shape}] brings the frame to ${elements} elements, over the ${limits.maxElements} limit`,
      );
    }
    const payloadBytes = v.getUint32(end - 4, true);
    const cols = shape[rank - 1];
    const expected = fixedPayloadBytes(codec, n, cols);
    if (expected !== null && payloadBytes !== expected) {
      throw new ProtocolError(
        "length-mismatch",
        `${where}: ${codec} payload of shape [${shape}] is ${expected} bytes, the sub-header says ${payloadBytes}`,
      );
    }
    if (expected === null && payloadBytes < 2) {
      throw new ProtocolError(
        "length-mismatch",
        `${where}: topk payload of ${payloadBytes} bytes is shorter than its header`,
      );
    }
    const padded = end + payloadBytes + pad4(payloadBytes);
    if (padded > body.length) {
      throw new ProtocolError(
        "truncated",
        `${where}: payload of ${payloadBytes} bytes runs past the end of the frame`,
      );
    }
    for (let i = end + payloadBytes; i < padded; i++) {
      if (body[i] !== 0) {
        throw new ProtocolError("bad-payload", `${where}: padding byte is not zero`);
      }
    }
    parsed.push({ module, codec, shape, n, payload: body.subarray(end, end + payloadBytes) });
    p = padded;
  }
  if (p !== body.length) {
    throw new ProtocolError("trailing", `${type}: ${body.length - p} bytes follow the last tensor`);
  }
  // Pass 2: payloads.
  return parsed.map((t, i) => ({
    module: t.module,
    codec: t.codec,
    shape: t.shape,
    data: decodePayload(
      k,
      t.codec,
      t.payload,
      t.n,
      t.shape[t.shape.length - 1],
      `${type} tensor ${i}${t.module ? ` (${t.module})` : ""}`,
      buffers?.take(i, t.n),
    ),
    payloadBytes: t.payload.length,
  }));
}

function decodeControl(h: RawHeader, header: FrameHeader, body: Uint8Array): Frame {
  const type = h.type as ControlMessageType;
  if (h.mask !== 0) {
    throw new ProtocolError(
      "bad-modules",
      `${type} is a control message but names modules ${modulesOf(h.mask)}`,
    );
  }
  if (h.tensorCount !== 0) {
    throw new ProtocolError(
      "bad-tensors",
      `${type} is a control message but declares ${h.tensorCount} tensors`,
    );
  }
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const need = (n: number, exact = true) => {
    if (exact ? body.length !== n : body.length < n) {
      throw new ProtocolError(
        "bad-body",
        `${type} body is ${body.length} bytes, expected ${exact ? "" : "at least "}${n}`,
      );
    }
  };
  switch (type) {
    case "HELLO": {
      need(8);
      const [minVersion, maxVersion, roleId, codecMask] = body;
      const role = roleId === 1 ? "device" : roleId === 2 ? "coordinator" : null;
      if (role === null) {
        throw new ProtocolError(
          "bad-body",
          `HELLO role ${roleId} is neither 1 (device) nor 2 (coordinator)`,
        );
      }
      if (minVersion < 1 || minVersion > maxVersion) {
        throw new ProtocolError(
          "bad-body",
          `HELLO versions ${minVersion}..${maxVersion} are not a range of versions ≥ 1`,
        );
      }
      const allCodecs = (1 << Object.keys(CODECS).length) - 1;
      if (codecMask === 0 || codecMask & ~allCodecs) {
        throw new ProtocolError(
          "bad-body",
          `HELLO codec mask 0x${codecMask.toString(16)} is empty or has unknown codecs`,
        );
      }
      const maxFrameBytes = v.getUint32(4, true);
      if (maxFrameBytes < HEADER_BYTES) {
        throw new ProtocolError(
          "bad-body",
          `HELLO maxFrameBytes ${maxFrameBytes} is smaller than a header`,
        );
      }
      const codecs = (Object.keys(CODECS) as Codec[]).filter((c) => codecMask & (1 << CODECS[c]));
      return { ...header, type, hello: { role, minVersion, maxVersion, codecs, maxFrameBytes } };
    }
    case "PING":
    case "PONG":
      need(4, false);
      return { ...header, type, nonce: v.getUint32(0, true), padding: body.slice(4) };
    case "ACK": {
      need(4);
      const acked = messageTypeOf(body[0]);
      if (acked === null) {
        throw new ProtocolError("bad-body", `ACK of unknown message type ${body[0]}`);
      }
      if (body[1] | body[2] | body[3]) {
        throw new ProtocolError("bad-body", "ACK reserved bytes are not zero");
      }
      return { ...header, type, acked };
    }
    case "STEP_END":
      need(0);
      return { ...header, type };
    case "ERROR": {
      need(4, false);
      const code = v.getUint16(0, true);
      const length = v.getUint16(2, true);
      if (code === 0) throw new ProtocolError("bad-body", "ERROR code 0 is not a code");
      if (length > MAX_ERROR_MESSAGE_BYTES) {
        throw new ProtocolError(
          "bad-body",
          `ERROR message of ${length} bytes exceeds ${MAX_ERROR_MESSAGE_BYTES}`,
        );
      }
      need(4 + length);
      let message: string;
      try {
        message = new TextDecoder("utf-8", { fatal: true }).decode(body.subarray(4));
      } catch {
        throw new ProtocolError("bad-body", "ERROR message is not valid UTF-8");
      }
      return { ...header, type, code, name: protocolErrorName(code), message };
    }
    case "SELECT":
      return { ...header, type, select: decodeControlJson("SELECT", body) };
    case "SCORES":
      return { ...header, type, scores: decodeControlJson("SCORES", body) };
  }
}

// ---------------------------------------------------------------------------
// Encoding.

function argError(message: string): ProtocolError {
  return new ProtocolError("bad-argument", message);
}

function checkUint(name: string, value: number, bits: 16 | 32): void {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw argError(`${name} must be an integer in 0..2^${bits}−1, got ${value}`);
  }
}

interface HeaderValues {
  type: MessageType;
  flags: number;
  mask: number;
  session: number;
  step: number;
  layer: number;
  micro: number;
  tensorCount: number;
}

function headerValues(
  type: MessageType,
  fields: FrameFields,
  mask: number,
  tensorCount: number,
  crc: boolean,
): HeaderValues {
  const layer = fields.layer ?? 0, micro = fields.micro ?? 0;
  checkUint("session", fields.session, 32);
  checkUint("step", fields.step, 32);
  checkUint("layer", layer, 16);
  checkUint("micro", micro, 16);
  return {
    type,
    flags: crc ? FLAG_CRC : 0,
    mask,
    session: fields.session,
    step: fields.step,
    layer,
    micro,
    tensorCount,
  };
}

/** Allocates the frame, writes the header (CRC still zero) and returns it with a DataView. */
function startFrame(h: HeaderValues, bodyLength: number, limits: Limits) {
  const total = HEADER_BYTES + bodyLength;
  if (total > limits.maxFrameBytes) {
    throw new ProtocolError(
      "too-large",
      `frame too large: ${formatBytes(total)} > ${
        formatBytes(limits.maxFrameBytes)
      } limit (${h.type}); send fewer elements per frame or a smaller codec`,
    );
  }
  const frame = new Uint8Array(total);
  const v = new DataView(frame.buffer);
  frame.set(MAGIC_BYTES, OFF.magic);
  v.setUint8(OFF.version, PROTOCOL_VERSION);
  v.setUint8(OFF.type, MESSAGE_TYPES[h.type]);
  v.setUint8(OFF.flags, h.flags);
  v.setUint8(OFF.modules, h.mask);
  v.setUint32(OFF.session, h.session, true);
  v.setUint32(OFF.step, h.step, true);
  v.setUint16(OFF.layer, h.layer, true);
  v.setUint16(OFF.micro, h.micro, true);
  v.setUint8(OFF.tensorCount, h.tensorCount);
  v.setUint32(OFF.bodyLength, bodyLength, true);
  return { frame, v };
}

function sealFrame(frame: Uint8Array, flags: number): Uint8Array {
  if (flags & FLAG_CRC) new DataView(frame.buffer).setUint32(OFF.crc, frameCrc(frame), true);
  return frame;
}

/** Writes one tensor's sub-header at `p`; returns where its payload starts. */
function writeSubHeader(v: DataView, p: number, t: PlannedTensor, payloadBytes: number): number {
  v.setUint8(p, t.module === null ? NO_MODULE : PROJS.indexOf(t.module));
  v.setUint8(p + 1, CODECS[t.codec]);
  v.setUint8(p + 2, t.shape.length);
  p += 4;
  for (const d of t.shape) {
    v.setUint32(p, d, true);
    p += 4;
  }
  v.setUint32(p, payloadBytes, true);
  return p + 4;
}

interface PlannedTensor {
  module: Proj | null;
  codec: Codec;
  shape: number[];
  n: number;
  cols: number;
  kCount: number;
  data: TensorData;
  feedbackKey?: string;
}

/**
 * Builds a hidden-state / activation / gradient frame. Validates the request (ProtocolError
 * "bad-argument", "bad-shape", "length-mismatch", "bad-modules", "bad-tensors",
 * "codec-not-allowed", "nonfinite", "too-large"); on any failure the feedback residuals and the
 * inputs are unchanged. Tensors of "each" frames are written in projection order.
 */
export function encodeTensorFrame(
  k: Kernels,
  input: TensorFrameInput,
  opts: EncodeOptions = {},
): Uint8Array {
  const limits = resolveLimits(opts.limits);
  const type = input.type;
  if (!(type in MESSAGE_TYPES) || !isTensorType(type)) {
    throw argError(`${type} is not a tensor message type`);
  }
  const layout = TENSOR_LAYOUT[type];
  const feedback = opts.feedback;
  if (feedback && feedback.kernels !== k) {
    throw argError("the TopkFeedback belongs to another Kernels instance");
  }
  const topkRatio = opts.topkRatio ?? 0.01;
  if (!(topkRatio > 0 && topkRatio <= 1)) {
    throw argError(`topkRatio must be in (0, 1], got ${topkRatio}`);
  }
  for (const t of input.tensors) {
    if (t.module !== undefined && !PROJS.includes(t.module)) {
      throw new ProtocolError(
        "bad-modules",
        `unknown module "${t.module}"; choose from ${PROJS.join(", ")}`,
      );
    }
  }
  for (const p of input.modules ?? []) {
    if (!PROJS.includes(p)) {
      throw new ProtocolError(
        "bad-modules",
        `unknown module "${p}"; choose from ${PROJS.join(", ")}`,
      );
    }
  }
  // Modules and tensor order.
  const tensors = [...input.tensors];
  let mask: number;
  if (layout === "each") {
    mask = maskOf(tensors.map((t) => t.module).filter((m): m is Proj => m !== undefined));
    if (tensors.some((t) => t.module === undefined)) {
      throw new ProtocolError("bad-modules", `every ${type} tensor must name its module`);
    }
    if (modulesOf(mask).length !== tensors.length) {
      throw new ProtocolError(
        "bad-modules",
        `${type} names a module twice: ${tensors.map((t) => t.module)}`,
      );
    }
    if (input.modules && maskOf(input.modules) !== mask) {
      throw new ProtocolError(
        "bad-modules",
        `${type} modules [${input.modules}] disagree with its tensors' modules [${
          modulesOf(mask)
        }]`,
      );
    }
    tensors.sort((a, b) => PROJS.indexOf(a.module!) - PROJS.indexOf(b.module!));
  } else {
    mask = maskOf(input.modules ?? []);
    if (tensors.some((t) => t.module !== undefined)) {
      throw new ProtocolError(
        "bad-modules",
        `${type} carries a shared tensor; give modules on the frame, not the tensor`,
      );
    }
  }
  checkModules(type, mask, (m) => {
    throw new ProtocolError("bad-modules", m);
  });
  const want = expectedTensorCount(type, mask);
  if (tensors.length !== want) {
    throw new ProtocolError(
      "bad-tensors",
      `${type} carries ${want} tensor(s), got ${tensors.length}`,
    );
  }
  const h = headerValues(type, input, mask, tensors.length, opts.crc ?? true);
  if (input.noDx) {
    if (type !== "GROUP_GRAD") throw argError(`noDx is a GROUP_GRAD flag; ${type} cannot carry it`);
    h.flags |= FLAG_NO_DX;
  }
  // Plan: shapes, codecs, sizes.
  const plan: PlannedTensor[] = [];
  let elements = 0;
  let minBytes = HEADER_BYTES;
  for (const [i, t] of tensors.entries()) {
    const where = `${type} tensor ${i}${t.module ? ` (${t.module})` : ""}`;
    const shape = [...t.shape];
    if (shape.length < 1 || shape.length > MAX_RANK) {
      throw new ProtocolError(
        "bad-shape",
        `${where}: rank ${shape.length} is outside 1..${MAX_RANK}`,
      );
    }
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 1 || d > 0xffffffff) {
        throw new ProtocolError(
          "bad-shape",
          `${where}: shape [${shape}] must be positive integers`,
        );
      }
    }
    const n = product(shape);
    elements += n;
    if (elements > limits.maxElements) {
      throw new ProtocolError(
        "bad-shape",
        `${where}: shape [${shape}] brings the frame to ${elements} elements, over the ${limits.maxElements} limit`,
      );
    }
    const length = valuesOf(t.data).length;
    if (length !== n) {
      throw new ProtocolError(
        "length-mismatch",
        `${where}: data has ${length} values, shape [${shape}] needs ${n}`,
      );
    }
    const codec = t.codec ?? opts.codec ?? "f32";
    if (!(codec in CODECS)) {
      throw new ProtocolError("unknown-codec", `${where}: unknown codec "${codec}"`);
    }
    if (!codecAllowed(type, codec)) {
      throw new ProtocolError(
        "codec-not-allowed",
        `${where}: ${codec} is for gradients only, not ${type}`,
      );
    }
    let kCount = 0;
    if (codec === "topk") {
      kCount = t.k ?? Math.max(1, Math.ceil(topkRatio * n));
      if (!Number.isInteger(kCount) || kCount < 1 || kCount > n) {
        throw argError(`${where}: top-k keeps k = ${kCount}; it must be an integer in 1..${n}`);
      }
    }
    const cols = shape[shape.length - 1];
    const moduleName = t.module ?? (layout === "group" ? groupOf(mask)! : "-");
    plan.push({
      module: t.module ?? null,
      codec,
      shape,
      n,
      cols,
      kCount,
      data: t.data,
      feedbackKey: codec === "topk" && feedback
        ? TopkFeedback.key(type, h.layer, moduleName)
        : undefined,
    });
    const payload = minPayloadBytes(codec, n, cols);
    minBytes += 8 + 4 * shape.length + payload + pad4(payload);
  }
  if (minBytes > limits.maxFrameBytes) {
    throw new ProtocolError(
      "too-large",
      `frame too large: ${formatBytes(minBytes)} > ${
        formatBytes(limits.maxFrameBytes)
      } limit (${type}); send fewer elements per frame or a smaller codec`,
    );
  }
  // Fixed-size payloads go straight into the frame (no copy in between).
  const fixed = plan.map((t) => fixedPayloadBytes(t.codec, t.n, t.cols));
  if (fixed.every((b) => b !== null)) {
    let bodyLength = 0;
    for (const [i, t] of plan.entries()) {
      bodyLength += 8 + 4 * t.shape.length + fixed[i]! + pad4(fixed[i]!);
    }
    const { frame, v } = startFrame(h, bodyLength, limits);
    let p = HEADER_BYTES;
    for (const [i, t] of plan.entries()) {
      p = writeSubHeader(v, p, t, fixed[i]!);
      encodePayload(k, {
        codec: t.codec,
        data: t.data,
        n: t.n,
        cols: t.cols,
        kCount: t.kCount,
        where: `${type} tensor ${i}${t.module ? ` (${t.module})` : ""}`,
      }, frame.subarray(p, p + fixed[i]!));
      p += fixed[i]! + pad4(fixed[i]!);
    }
    return sealFrame(frame, h.flags);
  }
  // Encode payloads; feedback residuals are staged and committed only once the frame exists.
  // Encode payloads; feedback residuals are staged and committed only once the frame exists.
  const staged = new Map<string, ReturnType<TopkFeedback["stage"]>>();
  try {
    const payloads: Uint8Array[] = [];
    for (const [i, t] of plan.entries()) {
      let residual;
      if (t.feedbackKey) {
        if (staged.has(t.feedbackKey)) {
          throw argError(`two tensors share feedback stream ${t.feedbackKey}`);
        }
        residual = feedback!.stage(t.feedbackKey, t.n);
        staged.set(t.feedbackKey, residual);
      }
      payloads.push(encodePayload(k, {
        codec: t.codec,
        data: t.data,
        n: t.n,
        cols: t.cols,
        kCount: t.kCount,
        residual,
        where: `${type} tensor ${i}${t.module ? ` (${t.module})` : ""}`,
      }));
    }
    let bodyLength = 0;
    for (const [i, t] of plan.entries()) {
      bodyLength += 8 + 4 * t.shape.length + payloads[i].length + pad4(payloads[i].length);
    }
    const { frame, v } = startFrame(h, bodyLength, limits);
    let p = HEADER_BYTES;
    for (const [i, t] of plan.entries()) {
      p = writeSubHeader(v, p, t, payloads[i].length);
      frame.set(payloads[i], p);
      p += payloads[i].length + pad4(payloads[i].length);
    }
    sealFrame(frame, h.flags);
    for (const [key, r] of staged) feedback!.commit(key, r);
    staged.clear();
    return frame;
  } finally {
    for (const r of staged.values()) r.free();
  }
}

const utf8 = new TextEncoder();

/** Cuts a message to at most `max` UTF-8 bytes on a character boundary. */
function utf8Prefix(message: string, max: number): Uint8Array {
  const bytes = utf8.encode(message);
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // don't split a character
  return bytes.slice(0, end);
}

/** Builds a control frame (HELLO, PING, PONG, ACK, STEP_END, ERROR, SELECT, SCORES). */
export function encodeControlFrame(input: ControlFrameInput, opts: EncodeOptions = {}): Uint8Array {
  const limits = resolveLimits(opts.limits);
  let body: Uint8Array;
  switch (input.type) {
    case "HELLO": {
      const hello = input.hello;
      const roleId = ROLE_IDS[hello.role];
      if (!roleId) throw argError(`HELLO role must be device or coordinator, got ${hello.role}`);
      if (
        !Number.isInteger(hello.minVersion) || !Number.isInteger(hello.maxVersion) ||
        hello.minVersion < 1 || hello.minVersion > hello.maxVersion || hello.maxVersion > 255
      ) {
        throw argError(
          `HELLO versions ${hello.minVersion}..${hello.maxVersion} are not a range in 1..255`,
        );
      }
      let mask = 0;
      for (const c of hello.codecs) {
        if (!(c in CODECS)) throw new ProtocolError("unknown-codec", `HELLO: unknown codec "${c}"`);
        mask |= 1 << CODECS[c];
      }
      if (mask === 0) throw argError("HELLO must accept at least one codec");
      checkUint("HELLO maxFrameBytes", hello.maxFrameBytes, 32);
      if (hello.maxFrameBytes < HEADER_BYTES) {
        throw argError(`HELLO maxFrameBytes ${hello.maxFrameBytes} is smaller than a header`);
      }
      body = new Uint8Array(8);
      body.set([hello.minVersion, hello.maxVersion, roleId, mask]);
      new DataView(body.buffer).setUint32(4, hello.maxFrameBytes, true);
      break;
    }
    case "PING":
    case "PONG": {
      checkUint(`${input.type} nonce`, input.nonce, 32);
      const padding = input.padding ?? new Uint8Array(0);
      body = new Uint8Array(4 + padding.length);
      new DataView(body.buffer).setUint32(0, input.nonce, true);
      body.set(padding, 4);
      break;
    }
    case "ACK":
      if (!(input.acked in MESSAGE_TYPES)) {
        throw argError(`ACK of unknown message type ${input.acked}`);
      }
      body = new Uint8Array([MESSAGE_TYPES[input.acked], 0, 0, 0]);
      break;
    case "STEP_END":
      body = new Uint8Array(0);
      break;
    case "ERROR": {
      checkUint("ERROR code", input.code, 16);
      if (input.code === 0) throw argError("ERROR code 0 is not a code");
      const message = utf8Prefix(input.message, MAX_ERROR_MESSAGE_BYTES);
      body = new Uint8Array(4 + message.length);
      const bv = new DataView(body.buffer);
      bv.setUint16(0, input.code, true);
      bv.setUint16(2, message.length, true);
      body.set(message, 4);
      break;
    }
    case "SELECT":
      body = encodeControlJson("SELECT", input.select);
      break;
    case "SCORES":
      body = encodeControlJson("SCORES", input.scores);
      break;
    default:
      throw argError(`${(input as { type: string }).type} is not a control message type`);
  }
  const h = headerValues(input.type, input, 0, 0, opts.crc ?? true);
  const { frame } = startFrame(h, body.length, limits);
  frame.set(body, HEADER_BYTES);
  return sealFrame(frame, h.flags);
}

/**
 * The ERROR frame answering `err`: a ProtocolError keeps its code; anything else is "internal".
 * session/step default to those of the frame at fault when its header was readable, else 0.
 */
export function errorFrame(
  err: unknown,
  session?: number,
  step?: number,
  opts: EncodeOptions = {},
): Uint8Array {
  const pe = err instanceof ProtocolError ? err : null;
  const code = pe ? pe.wireCode : PROTOCOL_ERROR_CODES.internal;
  const message = err instanceof Error ? err.message : String(err);
  const ref = pe?.frame;
  return encodeControlFrame({
    type: "ERROR",
    session: session ?? ref?.session ?? 0,
    step: step ?? ref?.step ?? 0,
    layer: ref?.layer ?? 0,
    micro: ref?.micro ?? 0,
    code,
    message,
  }, { crc: opts.crc }); // an ERROR frame is at most 1060 bytes: default limits always fit
}
