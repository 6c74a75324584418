/**
 * Conventions of one step-stream session that both ends share (DLORA.md §2, §5): which codec each
 * message type travels in, the application ERROR codes above the ProtocolError ones, and the
 * WebSocket close codes a session ends with.
 */
import type { EncodeOptions } from "./frame.ts";
import { type Codec, GRADIENT_TYPES, type TensorMessageType } from "./wire.ts";

/** A job's transport encoding (the job spec's `codec`). */
export interface StreamCodecs {
  /** h0, X, ΔY, hL. */
  activations: Exclude<Codec, "topk">;
  /** ∂L/∂hL, G, ∂X_lora when not sparsified. */
  gradients: Exclude<Codec, "topk">;
  /** Magnitude top-k on gradients: the fraction of entries sent, or null for dense. */
  topk: number | null;
}

export const F32_CODECS: StreamCodecs = { activations: "f32", gradients: "f32", topk: null };

/** The codec a tensor of `type` is sent in. */
export function codecFor(type: TensorMessageType, codecs: StreamCodecs): Codec {
  if (!GRADIENT_TYPES.has(type)) return codecs.activations;
  return codecs.topk !== null ? "topk" : codecs.gradients;
}

/**
 * Whether tensor frames carry the optional CRC-32 unless told otherwise: no. The step stream runs
 * over TCP (TLS in production), which already checks every byte, and a CRC over the ~2×40 MB a
 * stories260K step moves at B=8, T=256 costs more than the frozen blocks themselves (measured:
 * 1.2 ms to seal and 0.75 ms to check 512 KB, against 0.19 / 0.15 ms without). Control frames
 * keep theirs; `crc: true` turns it on for tensors too (e.g. across an untrusted relay).
 */
export const TENSOR_CRC_DEFAULT = false;

/** Encode options for a frame of `type` (top-k ratio and CRC included). */
export function encodeOptionsFor(
  type: TensorMessageType,
  codecs: StreamCodecs,
  crc = TENSOR_CRC_DEFAULT,
): Pick<EncodeOptions, "codec" | "topkRatio" | "crc"> {
  const codec = codecFor(type, codecs);
  return codec === "topk" ? { codec, topkRatio: codecs.topk!, crc } : { codec, crc };
}

/**
 * ERROR codes of the session layer (the frame decoded, but the session refuses it or ends).
 * ProtocolError codes stay below 100. Never renumber.
 */
export const STREAM_ERROR_CODES = {
  /** A well-formed frame that is not what the step expects now; ignored, nothing changed. */
  "unexpected-frame": 100,
  /** The job's base model could not be loaded on the coordinator. Fatal. */
  "model-unavailable": 101,
  /** The operator cancelled the job. Fatal. */
  "job-cancelled": 102,
  /** The peer stopped answering. Fatal. */
  "timeout": 103,
  /** Too many refused frames in a row. Fatal. */
  "too-many-errors": 104,
  /** HELLO: no protocol version or codec in common. Fatal. */
  "incompatible": 105,
  /** The sender aborts the step in progress (e.g. a non-finite loss); both sides drop it. */
  "step-aborted": 106,
  /** The coordinator is shutting down. Fatal. */
  "shutdown": 107,
  /** A failure inside the coordinator. Fatal. */
  "internal": 108,
} as const;

export type StreamErrorCode = keyof typeof STREAM_ERROR_CODES;

const STREAM_NAMES = new Map<number, StreamErrorCode>(
  Object.entries(STREAM_ERROR_CODES).map(([name, n]) => [n, name as StreamErrorCode]),
);

/** The session-layer name of an ERROR code, or null when it is not one. */
export function streamErrorName(code: number): StreamErrorCode | null {
  return STREAM_NAMES.get(code) ?? null;
}

/** WebSocket close codes a session ends with (1000–1011 standard, 4xxx ours). */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  /** Too many refused frames, or a peer that breaks the handshake. */
  policy: 1008,
  internal: 1011,
  jobCancelled: 4001,
  timeout: 4002,
  modelUnavailable: 4003,
  incompatible: 4004,
} as const;
