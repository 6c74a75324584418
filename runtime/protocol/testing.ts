/** Helpers for the protocol tests (not part of the runtime API): frame surgery and a corpus. */
import type { Kernels } from "../../kernels/mod.ts";
import { randn, rng } from "../../tests/util.ts";
import { type Frame, frameCrc } from "./frame.ts";
import { encodeControlFrame, encodeTensorFrame, type TensorFrameInput } from "./frame.ts";
import { TopkFeedback } from "./payload.ts";
import { type Codec, FLAG_CRC, HEADER_BYTES, OFF } from "./wire.ts";

/** Recomputes the CRC field (when the CRC flag is on) after editing a frame. */
export function reseal(frame: Uint8Array): Uint8Array {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame[OFF.flags] & FLAG_CRC) v.setUint32(OFF.crc, frameCrc(frame), true);
  return frame;
}

/** Byte offset (in the frame) of each tensor sub-header, walking a well-formed tensor frame. */
export function tensorOffsets(frame: Uint8Array): number[] {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const out: number[] = [];
  let p = HEADER_BYTES;
  for (let t = 0; t < frame[OFF.tensorCount]; t++) {
    out.push(p);
    const rank = frame[p + 2];
    const len = v.getUint32(p + 4 + 4 * rank, true);
    p += 8 + 4 * rank + len + ((4 - (len & 3)) & 3);
  }
  return out;
}

/** Offset of tensor t's payload and its length. */
export function payloadAt(frame: Uint8Array, t = 0): { offset: number; length: number } {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const p = tensorOffsets(frame)[t];
  const rank = frame[p + 2];
  return { offset: p + 8 + 4 * rank, length: v.getUint32(p + 4 + 4 * rank, true) };
}

/** The frame with its body replaced (bodyLength fixed, CRC resealed). */
export function withBody(frame: Uint8Array, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + body.length);
  out.set(frame.subarray(0, HEADER_BYTES));
  out.set(body, HEADER_BYTES);
  new DataView(out.buffer).setUint32(OFF.bodyLength, body.length, true);
  return reseal(out);
}

/** A copy of `frame` with `edit` applied, then resealed. */
export function edited(frame: Uint8Array, edit: (f: Uint8Array, v: DataView) => void): Uint8Array {
  const f = frame.slice();
  edit(f, new DataView(f.buffer));
  return reseal(f);
}

/** A hash of a feedback state (residual bytes and keys), to prove it did not change. */
export function feedbackFingerprint(fb: TopkFeedback): string {
  const parts: string[] = [];
  for (const [key, r] of [...fb.snapshot()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    let h = 0x811c9dc5;
    const bits = new Uint32Array(r.buffer, r.byteOffset, r.length);
    for (let i = 0; i < bits.length; i++) h = Math.imul(h ^ bits[i], 0x01000193) >>> 0;
    parts.push(`${key}:${r.length}:${h.toString(16)}`);
  }
  return parts.join("|");
}

/** Structural invariants every successfully decoded frame must satisfy. */
export function checkDecoded(f: Frame): void {
  const fail = (m: string) => {
    throw new Error(`decoded ${f.type} frame breaks an invariant: ${m}`);
  };
  if ("tensors" in f) {
    for (const t of f.tensors) {
      if (t.shape.length < 1 || t.shape.length > 4) fail(`rank ${t.shape.length}`);
      const n = t.shape.reduce((a, b) => a * b, 1);
      if (t.data.length !== n) fail(`data ${t.data.length} for shape [${t.shape}]`);
      for (let i = 0; i < t.data.length; i++) {
        if (!Number.isFinite(t.data[i])) fail(`value ${i} is ${t.data[i]}`);
      }
    }
  }
}

/** Values spread over magnitudes 2^lo … 2^hi with random signs (no zeros). */
export function spreadValues(n: number, seed: number, lo: number, hi: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() < 0.5 ? -1 : 1) * 2 ** (lo + r() * (hi - lo));
  return out;
}

/**
 * A corpus of valid frames: every tensor message type with every codec it allows (small odd
 * shapes, CRC on and off) and every control message. `feedback` receives the top-k residuals.
 */
export function sampleFrames(k: Kernels, feedback: TopkFeedback): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const codecs: Codec[] = ["f32", "f16", "bf16", "int8", "topk"];
  let seed = 1;
  const t = (shape: number[]) => ({ data: randn(shape.reduce((a, b) => a * b, 1), seed++), shape });
  for (const crc of [true, false]) {
    for (const codec of codecs) {
      const grad = codec === "topk";
      const inputs: TensorFrameInput[] = [
        { type: "GRAD_HL", session: 7, step: 3, tensors: [t([2, 3, 5])] },
        {
          type: "GROUP_GRAD",
          session: 7,
          step: 3,
          layer: 1,
          tensors: [{ module: "q", ...t([3, 8]) }, { module: "v", ...t([3, 4]) }],
        },
        {
          type: "GRAD_X_LORA",
          session: 7,
          step: 3,
          layer: 2,
          modules: ["gate", "up"],
          tensors: [t([1, 3, 7])],
        },
      ];
      if (!grad) {
        inputs.push(
          { type: "HIDDEN_H0", session: 7, step: 3, micro: 1, tensors: [t([2, 3, 5])] },
          { type: "GROUP_INPUT", session: 7, step: 3, layer: 4, modules: ["o"], tensors: [t([9])] },
          {
            type: "DELTA_Y",
            session: 7,
            step: 3,
            layer: 0,
            tensors: [
              { module: "q", ...t([3, 8]) },
              { module: "k", ...t([3, 4]) },
              { module: "v", ...t([3, 4]) },
            ],
          },
          { type: "HIDDEN_HL", session: 7, step: 3, tensors: [t([1, 1, 2, 3])] },
        );
      }
      for (const input of inputs) {
        frames.push(
          encodeTensorFrame(k, input, { codec, crc, feedback, topkRatio: 0.3 }),
        );
      }
    }
    const fields = { session: 9, step: 1 };
    frames.push(
      encodeControlFrame({
        type: "HELLO",
        ...fields,
        hello: {
          role: "device",
          minVersion: 1,
          maxVersion: 1,
          codecs: ["f32", "topk"],
          maxFrameBytes: 1 << 20,
        },
      }, { crc }),
      encodeControlFrame({ type: "PING", ...fields, nonce: 42, padding: new Uint8Array(5) }, {
        crc,
      }),
      encodeControlFrame({ type: "PONG", ...fields, nonce: 42 }, { crc }),
      encodeControlFrame({ type: "ACK", ...fields, acked: "DELTA_Y" }, { crc }),
      encodeControlFrame({ type: "STEP_END", ...fields }, { crc }),
      encodeControlFrame({ type: "ERROR", ...fields, code: 14, message: "value 3 is NaN — ✗" }, {
        crc,
      }),
      encodeControlFrame({
        type: "SELECT",
        ...fields,
        select: {
          step: 2,
          active: ["0.q", "0.v", "3.down"],
          probing: ["1.k"],
          killed: ["0.k"],
          revived: ["1.k"],
          events: [{ kind: "kill", module: "0.k", score: 0.01 }, { kind: "probe", module: "1.k" }],
          budget: { rho: 0.5 },
          tier: "A",
          reportAt: 5,
          score: "effective",
        },
      }, { crc }),
      encodeControlFrame({
        type: "SCORES",
        ...fields,
        scores: { step: 5, score: "sensitivity", values: { "0.q": 1e-3, "1.k": 0 } },
      }, { crc }),
    );
  }
  return frames;
}
