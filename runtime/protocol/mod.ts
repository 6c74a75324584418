/**
 * The DLoRA step-stream wire protocol (DLORA.md §5): versioned binary frames shared by the
 * coordinator and devices. Host-agnostic (no Deno API). Byte layout: README.md.
 */
export {
  formatBytes,
  type FrameRef,
  PROTOCOL_ERROR_CODES,
  ProtocolError,
  type ProtocolErrorCode,
  protocolErrorName,
} from "./errors.ts";
export { crc32, crc32Update } from "./crc32.ts";
export {
  type Codec,
  codecAllowed,
  CODECS,
  type ControlMessageType,
  DEFAULT_LIMITS,
  type Direction,
  GRADIENT_TYPES,
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
  modulesOf,
  PROTOCOL_VERSION,
  resolveLimits,
  type Role,
  sendDirection,
  TENSOR_LAYOUT,
  type TensorMessageType,
} from "./wire.ts";
export { type TensorData, TopkFeedback } from "./payload.ts";
export {
  type AckFrame,
  type ControlFrameInput,
  type DecodedTensor,
  decodeFrame,
  decodeHeader,
  type DecodeOptions,
  encodeControlFrame,
  type EncodeOptions,
  encodeTensorFrame,
  type ErrorFrame,
  errorFrame,
  type Frame,
  frameCrc,
  type FrameFields,
  type FrameHeader,
  frameLength,
  type Hello,
  type HelloFrame,
  type PingFrame,
  type ScoresFrame,
  type SelectFrame,
  type StepEndFrame,
  type TensorFrame,
  type TensorFrameInput,
  type TensorInput,
} from "./frame.ts";
export { type CountedType, type TypeCounts, WireStats, type WireStatsJSON } from "./stats.ts";
export { Mailbox, MailboxTimeout } from "./mailbox.ts";
export {
  decodeControlJson,
  encodeControlJson,
  type ScoresMessage,
  scoresMessageSchema,
  type SelectMessage,
  selectMessageSchema,
} from "./control.ts";
export {
  CLOSE_CODES,
  codecFor,
  encodeOptionsFor,
  F32_CODECS,
  STREAM_ERROR_CODES,
  type StreamCodecs,
  type StreamErrorCode,
  streamErrorName,
  TENSOR_CRC_DEFAULT,
} from "./stream.ts";
