/**
 * Protocol errors: every refusal of a frame (decoding) or of a request to build one (encoding) is a
 * `ProtocolError` with a machine-readable code, a message a person can act on, and — when the
 * fixed header was readable — which frame it was about, so the receiver can answer with an ERROR
 * frame (`errorFrame` in frame.ts).
 */

/** Wire number of each code (the ERROR frame body carries the number). Never renumber. */
export const PROTOCOL_ERROR_CODES = {
  "bad-magic": 1,
  "bad-version": 2,
  "truncated": 3,
  "trailing": 4,
  "too-large": 5,
  "unknown-type": 6,
  "unknown-codec": 7,
  "bad-flags": 8,
  "bad-modules": 9,
  "bad-tensors": 10,
  "bad-shape": 11,
  "length-mismatch": 12,
  "bad-payload": 13,
  "nonfinite": 14,
  "crc-mismatch": 15,
  "codec-not-allowed": 16,
  "bad-body": 17,
  "wrong-direction": 18,
  "bad-argument": 19,
  "internal": 20,
} as const;

export type ProtocolErrorCode = keyof typeof PROTOCOL_ERROR_CODES;

const NAMES = new Map<number, ProtocolErrorCode>(
  Object.entries(PROTOCOL_ERROR_CODES).map(([name, n]) => [n, name as ProtocolErrorCode]),
);

/** The code name of an ERROR frame's numeric code, or null for an application code. */
export function protocolErrorName(code: number): ProtocolErrorCode | null {
  return NAMES.get(code) ?? null;
}

/** Header fields of the frame an error is about, when the fixed header could be read. */
export interface FrameRef {
  type: string;
  session: number;
  step: number;
  layer: number;
  micro: number;
}

export class ProtocolError extends Error {
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
    readonly frame?: FrameRef,
  ) {
    super(message);
    this.name = "ProtocolError";
  }

  /** The number this code has in an ERROR frame. */
  get wireCode(): number {
    return PROTOCOL_ERROR_CODES[this.code];
  }
}

/** "9.4 MiB", "812 B": sizes in messages (binary units, as the limits are set). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024, u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${+v.toFixed(1)} ${units[u]}`;
}
