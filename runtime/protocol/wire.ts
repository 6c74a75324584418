/**
 * The vocabulary of the step stream (DLORA.md §2, §5): message types with their wire numbers and
 * directions, codecs, module bitmasks, the fixed header layout and the size limits.
 */
import { PROJ_GROUPS } from "../model/hooks.ts";
import { type Proj, PROJS } from "../model/modules.ts";

export type { Proj };

export const MAGIC = "DLRA";
/** The protocol version this build speaks (writes and accepts). */
export const PROTOCOL_VERSION = 1;
/** Bytes of the fixed frame header. */
export const HEADER_BYTES = 32;
export const MAX_RANK = 4;
/** Flag bit: the header's crc32 field holds the CRC-32 of the whole frame. */
export const FLAG_CRC = 0x01;
/**
 * Flag bit, GROUP_GRAD only: no ∂X_lora is wanted (no trained module lies upstream of the
 * group), so the device accumulates ∂A, ∂B and sends no GRAD_X_LORA back.
 */
export const FLAG_NO_DX = 0x02;
/** Module id of a tensor that belongs to no single projection (h0, hL, X, ∂X_lora). */
export const NO_MODULE = 0xff;

// Byte offsets inside the fixed header (README.md has the table).
export const OFF = {
  magic: 0,
  version: 4,
  type: 5,
  flags: 6,
  modules: 7,
  session: 8,
  step: 12,
  layer: 16,
  micro: 18,
  tensorCount: 20,
  reserved: 21, // 3 bytes, zero
  bodyLength: 24,
  crc: 28,
} as const;

export const MESSAGE_TYPES = {
  HELLO: 1,
  PING: 2,
  PONG: 3,
  ACK: 4,
  STEP_END: 5,
  ERROR: 6,
  /** Module selection (JSON, control.ts): the coordinator's decision. */
  SELECT: 7,
  /** Module selection (JSON, control.ts): the device's per-module scores. */
  SCORES: 8,
  HIDDEN_H0: 16,
  GROUP_INPUT: 17,
  DELTA_Y: 18,
  HIDDEN_HL: 19,
  GRAD_HL: 20,
  GROUP_GRAD: 21,
  GRAD_X_LORA: 22,
} as const;

export type MessageType = keyof typeof MESSAGE_TYPES;
export type TensorMessageType =
  | "HIDDEN_H0"
  | "GROUP_INPUT"
  | "DELTA_Y"
  | "HIDDEN_HL"
  | "GRAD_HL"
  | "GROUP_GRAD"
  | "GRAD_X_LORA";
export type ControlMessageType = Exclude<MessageType, TensorMessageType>;

const TYPE_NAMES = new Map<number, MessageType>(
  Object.entries(MESSAGE_TYPES).map(([name, n]) => [n, name as MessageType]),
);

/** The message type of a wire number, or null when unknown. */
export function messageTypeOf(id: number): MessageType | null {
  return TYPE_NAMES.get(id) ?? null;
}

export function isTensorType(type: MessageType): type is TensorMessageType {
  return MESSAGE_TYPES[type] >= 16;
}

/** up = device → coordinator, down = coordinator → device. */
export type Direction = "up" | "down";
export type Role = "device" | "coordinator";

/** Who may send each message type. */
export const MESSAGE_DIRECTION: Record<MessageType, Direction | "both"> = {
  HELLO: "both",
  PING: "both",
  PONG: "both",
  ACK: "both",
  STEP_END: "both",
  ERROR: "both",
  SELECT: "down",
  SCORES: "up",
  HIDDEN_H0: "up",
  GROUP_INPUT: "down",
  DELTA_Y: "up",
  HIDDEN_HL: "down",
  GRAD_HL: "up",
  GROUP_GRAD: "down",
  GRAD_X_LORA: "up",
};

/** The direction of a frame sent by `role`. */
export function sendDirection(role: Role): Direction {
  return role === "device" ? "up" : "down";
}

/**
 * How a tensor frame names its modules:
 * - "none": no module (mask 0), one tensor (h0, hL, ∂L/∂hL);
 * - "group": a non-empty subset of one input group, one tensor shared by them (X, Σ ∂X_lora);
 * - "each": a non-empty subset of one input group, one tensor per module in projection order
 *   (ΔY, G).
 */
export const TENSOR_LAYOUT: Record<TensorMessageType, "none" | "group" | "each"> = {
  HIDDEN_H0: "none",
  GROUP_INPUT: "group",
  DELTA_Y: "each",
  HIDDEN_HL: "none",
  GRAD_HL: "none",
  GROUP_GRAD: "each",
  GRAD_X_LORA: "group",
};

export const CODECS = { f32: 0, f16: 1, bf16: 2, int8: 3, topk: 4 } as const;
export type Codec = keyof typeof CODECS;
const CODEC_NAMES = new Map<number, Codec>(
  Object.entries(CODECS).map(([name, n]) => [n, name as Codec]),
);

/** The codec of a wire number, or null when unknown. */
export function codecOf(id: number): Codec | null {
  return CODEC_NAMES.get(id) ?? null;
}

/** Only gradients may be sparsified: top-k of an activation would change the forward pass. */
export const GRADIENT_TYPES: ReadonlySet<MessageType> = new Set([
  "GRAD_HL",
  "GROUP_GRAD",
  "GRAD_X_LORA",
]);

export function codecAllowed(type: TensorMessageType, codec: Codec): boolean {
  return codec !== "topk" || GRADIENT_TYPES.has(type);
}

/** Bit of each projection in the header's module mask (PROJS order: q=bit 0 … down=bit 6). */
export function moduleBit(proj: Proj): number {
  return 1 << PROJS.indexOf(proj);
}

export function maskOf(modules: readonly Proj[]): number {
  let m = 0;
  for (const p of modules) m |= moduleBit(p);
  return m;
}

/** The projections of a mask in projection order. */
export function modulesOf(mask: number): Proj[] {
  return PROJS.filter((_, i) => mask & (1 << i));
}

const GROUP_MASKS = PROJ_GROUPS.map((g) => maskOf(g));

/** The input group ("q,k,v", "o", "gate,up", "down") a non-empty mask lies in, or null. */
export function groupOf(mask: number): string | null {
  if (mask === 0) return null;
  for (let i = 0; i < GROUP_MASKS.length; i++) {
    if ((mask & ~GROUP_MASKS[i]) === 0) return PROJ_GROUPS[i].join(",");
  }
  return null;
}

export interface Limits {
  /** Largest whole frame, header included (default 64 MiB). */
  maxFrameBytes: number;
  /** Most elements over all tensors of one frame, i.e. what a decode may allocate (default 2^24). */
  maxElements: number;
}

export const DEFAULT_LIMITS: Limits = { maxFrameBytes: 64 * 1024 * 1024, maxElements: 1 << 24 };
/** An ERROR frame's message is cut to this many UTF-8 bytes. */
export const MAX_ERROR_MESSAGE_BYTES = 1024;

/** Fills in defaults and checks the values a caller configured. */
export function resolveLimits(limits: Partial<Limits> = {}): Limits {
  const r = { ...DEFAULT_LIMITS, ...limits };
  if (
    !Number.isInteger(r.maxFrameBytes) || r.maxFrameBytes < HEADER_BYTES ||
    r.maxFrameBytes > 2 ** 31
  ) {
    throw new RangeError(
      `maxFrameBytes must be an integer in ${HEADER_BYTES}..2^31, got ${r.maxFrameBytes}`,
    );
  }
  if (!Number.isInteger(r.maxElements) || r.maxElements < 1 || r.maxElements > 2 ** 28) {
    throw new RangeError(`maxElements must be an integer in 1..2^28, got ${r.maxElements}`);
  }
  return r;
}
