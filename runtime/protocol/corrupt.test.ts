/**
 * A table of corrupt frames, one per failure kind: each must throw the right ProtocolError code,
 * leave the caller's bytes and the error-feedback state unchanged, and be answerable with an
 * ERROR frame carrying that code.
 */
import { assert, assertEquals, randn, testKernels } from "../../tests/util.ts";
import { ProtocolError, type ProtocolErrorCode } from "./errors.ts";
import {
  decodeFrame,
  type DecodeOptions,
  encodeControlFrame,
  encodeTensorFrame,
  errorFrame,
} from "./frame.ts";
import { TopkFeedback } from "./payload.ts";
import {
  edited,
  feedbackFingerprint,
  payloadAt,
  reseal,
  tensorOffsets,
  withBody,
} from "./testing.ts";
import { CODECS, FLAG_CRC, HEADER_BYTES, MESSAGE_TYPES, OFF } from "./wire.ts";

const k = await testKernels();
const fb = new TopkFeedback(k);
// Some error-feedback state that must survive every refusal.
encodeTensorFrame(k, {
  type: "GROUP_GRAD",
  session: 1,
  step: 1,
  tensors: [{ module: "up", data: randn(40, 3), shape: [4, 10], k: 4 }],
}, { codec: "topk", feedback: fb });

const base = { session: 41, step: 9, layer: 3, micro: 2 };
const f32 = encodeTensorFrame(k, {
  type: "GRAD_HL",
  ...base,
  tensors: [{ data: randn(6, 1), shape: [2, 3] }],
});
const f32NoCrc = encodeTensorFrame(k, {
  type: "GRAD_HL",
  ...base,
  tensors: [{ data: randn(6, 1), shape: [2, 3] }],
}, { crc: false });
const deltaY = encodeTensorFrame(k, {
  type: "DELTA_Y",
  ...base,
  tensors: [
    { module: "q", data: randn(8, 2), shape: [2, 4] },
    { module: "k", data: randn(4, 3), shape: [2, 2] },
  ],
});
const int8 = encodeTensorFrame(k, {
  type: "HIDDEN_H0",
  ...base,
  tensors: [{ data: randn(24, 4), shape: [6, 4], codec: "int8" }],
});
const f16 = encodeTensorFrame(k, {
  type: "HIDDEN_HL",
  ...base,
  tensors: [{ data: randn(5, 5), shape: [5], codec: "f16" }],
});
const bf16 = encodeTensorFrame(k, {
  type: "GROUP_INPUT",
  ...base,
  modules: ["down"],
  tensors: [{ data: randn(5, 6), shape: [5], codec: "bf16" }],
});
const topk = encodeTensorFrame(k, {
  type: "GRAD_HL",
  ...base,
  tensors: [{ data: randn(20, 7), shape: [20], codec: "topk", k: 3 }],
});
const SELECT = {
  step: 4,
  active: ["0.q", "1.v"],
  probing: ["2.k"],
  killed: ["0.k"],
  revived: ["2.k"],
  events: [{ kind: "kill" as const, module: "0.k", score: 0.1 }, {
    kind: "probe" as const,
    module: "2.k",
  }],
  budget: { rho: 0.25 },
  tier: "B",
  reportAt: 8,
  score: "change" as const,
  lr_scale: 2,
};
const SCORES = { step: 8, score: "change" as const, values: { "0.q": 0.5, "1.v": 0.25 } };
const control = (
  type: "HELLO" | "ACK" | "STEP_END" | "ERROR" | "SELECT" | "SCORES",
) => {
  switch (type) {
    case "SELECT":
      return encodeControlFrame({ type, ...base, select: SELECT });
    case "SCORES":
      return encodeControlFrame({ type, ...base, scores: SCORES });
    case "HELLO":
      return encodeControlFrame({
        type,
        ...base,
        hello: {
          role: "device",
          minVersion: 1,
          maxVersion: 1,
          codecs: ["f32"],
          maxFrameBytes: 4096,
        },
      });
    case "ACK":
      return encodeControlFrame({ type, ...base, acked: "STEP_END" });
    case "STEP_END":
      return encodeControlFrame({ type, ...base });
    case "ERROR":
      return encodeControlFrame({ type, ...base, code: 3, message: "abc" });
  }
};

/** A tensor body: sub-header (module, codec, rank, 0, dims, length), payload, zero padding. */
function tensorBody(moduleId: number, codecId: number, shape: number[], payload: number[]) {
  const len = 8 + 4 * shape.length + payload.length;
  const body = new Uint8Array(len + ((4 - (len & 3)) & 3));
  const v = new DataView(body.buffer);
  body.set([moduleId, codecId, shape.length, 0]);
  shape.forEach((d, i) => v.setUint32(4 + 4 * i, d, true));
  v.setUint32(4 + 4 * shape.length, payload.length, true);
  body.set(payload, 8 + 4 * shape.length);
  return body;
}

/** A GRAD_HL frame (CRC on) whose one tensor is a hand-made top-k payload for n = 20. */
const topkFrame = (payload: number[]) =>
  withBody(topk, tensorBody(0xff, CODECS.topk, [20], payload));
const F16_ONE = [0x00, 0x3c], F16_INF = [0x00, 0x7c];

function payloadEdit(frame: Uint8Array, t: number, edit: (p: Uint8Array, v: DataView) => void) {
  return edited(frame, (f) => {
    const { offset, length } = payloadAt(f, t);
    const p = f.subarray(offset, offset + length);
    edit(p, new DataView(p.buffer, p.byteOffset, p.byteLength));
  });
}

function subHeaderEdit(
  frame: Uint8Array,
  t: number,
  edit: (f: Uint8Array, at: number, v: DataView) => void,
) {
  return edited(frame, (f, v) => edit(f, tensorOffsets(f)[t], v));
}

const bodyOf = (f: Uint8Array) => f.slice(HEADER_BYTES);
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const concat = (...parts: (Uint8Array | number[])[]) => {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

interface Row {
  name: string;
  frame: () => Uint8Array;
  code: ProtocolErrorCode;
  message?: RegExp;
  opts?: DecodeOptions;
}

const TABLE: Row[] = [
  // Fixed header.
  {
    name: "bad magic",
    frame: () => edited(f32, (f) => (f[0] = 0x58)),
    code: "bad-magic",
    message: /not a DLoRA frame/,
  },
  {
    name: "HTTP request",
    frame: () => new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
    code: "bad-magic",
  },
  { name: "empty", frame: () => new Uint8Array(0), code: "truncated" },
  {
    name: "bad version",
    frame: () => edited(f32, (f) => (f[OFF.version] = 2)),
    code: "bad-version",
    message: /version 2; this build speaks version 1/,
  },
  {
    name: "truncated header",
    frame: () => f32.slice(0, 20),
    code: "truncated",
    message: /20 bytes, the header alone is 32/,
  },
  {
    name: "truncated payload",
    frame: () => f32.slice(0, f32.length - 3),
    code: "truncated",
    message: /arrived/,
  },
  {
    name: "trailing garbage",
    frame: () => concat(f32, [0]),
    code: "trailing",
    message: /1 more follow/,
  },
  { name: "two frames in one", frame: () => concat(f32, f32), code: "trailing" },
  {
    name: "oversize (limit)",
    frame: () => f32,
    opts: { limits: { maxFrameBytes: 64 } },
    code: "too-large",
    message: /frame too large: 72 B > 64 B limit/,
  },
  {
    name: "oversize (declared 4 GB)",
    frame: () => edited(f32, (_, v) => v.setUint32(OFF.bodyLength, 0xfffffff0, true)),
    code: "too-large",
    message: /frame too large: 4 GiB > 64 MiB limit/,
  },
  {
    name: "unknown message type",
    frame: () => edited(f32, (f) => (f[OFF.type] = 99)),
    code: "unknown-type",
    message: /unknown message type 99/,
  },
  {
    name: "unknown flag bit",
    frame: () => edited(f32, (f) => (f[OFF.flags] |= 0x40)),
    code: "bad-flags",
  },
  {
    name: "no-∂X flag on a frame other than GROUP_GRAD",
    frame: () => edited(f32, (f) => (f[OFF.flags] |= 0x02)),
    code: "bad-flags",
    message: /only GROUP_GRAD may carry/,
  },
  {
    name: "reserved header byte",
    frame: () => edited(f32, (f) => (f[OFF.reserved + 1] = 1)),
    code: "bad-flags",
  },
  {
    name: "CRC value without CRC flag",
    frame: () => edited(f32, (f) => (f[OFF.flags] &= ~FLAG_CRC)),
    code: "bad-flags",
  },
  // CRC.
  {
    name: "payload bit flip under CRC",
    frame: () => {
      const f = f32.slice();
      f[payloadAt(f).offset + 2] ^= 0x10;
      return f; // not resealed
    },
    code: "crc-mismatch",
    message: /corrupted: CRC-32 is 0x[0-9a-f]{8}, the header says/,
  },
  {
    name: "header field flip under CRC",
    frame: () => {
      const f = f32.slice();
      f[OFF.step] ^= 1;
      return f;
    },
    code: "crc-mismatch",
  },
  // Modules and tensor counts.
  {
    name: "module bit 7",
    frame: () => edited(deltaY, (f) => (f[OFF.modules] |= 0x80)),
    code: "bad-modules",
  },
  {
    name: "modules span two groups",
    frame: () => edited(deltaY, (f) => (f[OFF.modules] = 0b1001)),
    code: "bad-modules",
    message: /several input groups/,
  },
  {
    name: "hidden state names a module",
    frame: () => edited(f32, (f) => (f[OFF.modules] = 1)),
    code: "bad-modules",
  },
  {
    name: "group input names no module",
    frame: () => edited(bf16, (f) => (f[OFF.modules] = 0)),
    code: "bad-modules",
  },
  {
    name: "tensor module disagrees with the mask",
    frame: () => subHeaderEdit(deltaY, 1, (f, at) => (f[at] = 2)),
    code: "bad-modules",
    message: /module is v, expected k/,
  },
  {
    name: "unknown module id",
    frame: () => subHeaderEdit(deltaY, 0, (f, at) => (f[at] = 9)),
    code: "bad-modules",
  },
  {
    name: "tensors out of projection order",
    frame: () => {
      const [a, b] = tensorOffsets(deltaY);
      return withBody(deltaY, concat(deltaY.slice(b), deltaY.slice(a, b)));
    },
    code: "bad-modules",
  },
  {
    name: "tensor count too high",
    frame: () => edited(f32, (f) => (f[OFF.tensorCount] = 2)),
    code: "bad-tensors",
  },
  {
    name: "tensor count zero",
    frame: () => edited(deltaY, (f) => (f[OFF.tensorCount] = 0)),
    code: "bad-tensors",
  },
  // Sub-headers and shapes.
  {
    name: "unknown codec",
    frame: () => subHeaderEdit(f32, 0, (f, at) => (f[at + 1] = 9)),
    code: "unknown-codec",
    message: /unknown codec 9/,
  },
  {
    name: "top-k on an activation",
    frame: () => subHeaderEdit(f16, 0, (f, at) => (f[at + 1] = CODECS.topk)),
    code: "codec-not-allowed",
    message: /topk is for gradients only, not HIDDEN_HL/,
  },
  {
    name: "sub-header reserved byte",
    frame: () => subHeaderEdit(f32, 0, (f, at) => (f[at + 3] = 1)),
    code: "bad-flags",
  },
  {
    name: "rank 0",
    frame: () => subHeaderEdit(f32, 0, (f, at) => (f[at + 2] = 0)),
    code: "bad-shape",
  },
  {
    name: "rank 5",
    frame: () => subHeaderEdit(f32, 0, (f, at) => (f[at + 2] = 5)),
    code: "bad-shape",
    message: /rank 5 is outside 1\.\.4/,
  },
  {
    name: "zero dimension",
    frame: () => subHeaderEdit(f32, 0, (_, at, v) => v.setUint32(at + 4, 0, true)),
    code: "bad-shape",
  },
  {
    name: "too many elements",
    frame: () => f32,
    opts: { limits: { maxElements: 5 } },
    code: "bad-shape",
    message: /6 elements, over the 5 limit/,
  },
  {
    name: "huge shape, small payload",
    frame: () => subHeaderEdit(topk, 0, (_, at, v) => v.setUint32(at + 4, 0xffffffff, true)),
    code: "bad-shape",
  },
  {
    name: "sub-header past the end",
    frame: () => withBody(f32, new Uint8Array([0xff, 0, 3, 0])),
    code: "truncated",
  },
  {
    name: "payload past the end",
    frame: () => withBody(f32, bodyOf(f32).slice(0, 20)),
    code: "truncated",
    message: /runs past the end/,
  },
  {
    name: "bytes after the last tensor",
    frame: () => withBody(f32, concat(bodyOf(f32), [0, 0, 0, 0])),
    code: "trailing",
  },
  // Payload length vs shape × codec.
  {
    name: "f32 length disagrees with shape",
    frame: () => subHeaderEdit(f32, 0, (_, at, v) => v.setUint32(at + 4, 3, true)),
    code: "length-mismatch",
    message: /f32 payload of shape \[3,3\] is 36 bytes, the sub-header says 24/,
  },
  {
    name: "f32 length field + 4",
    frame: () =>
      withBody(
        f32,
        concat(
          subHeaderEdit(f32, 0, (_, at, v) => v.setUint32(at + 12, 28, true)).slice(HEADER_BYTES),
          [0, 0, 0, 0],
        ),
      ),
    code: "length-mismatch",
  },
  {
    name: "int8 rows disagree with layout (6×4 → 4×6)",
    frame: () =>
      subHeaderEdit(int8, 0, (_, at, v) => {
        v.setUint32(at + 4, 4, true);
        v.setUint32(at + 8, 6, true);
      }),
    code: "length-mismatch",
    message: /int8 payload of shape \[4,6\] is 40 bytes/,
  },
  {
    name: "f16 length odd",
    frame: () => subHeaderEdit(f16, 0, (_, at, v) => v.setUint32(at + 8, 9, true)),
    code: "length-mismatch",
  },
  {
    name: "top-k n disagrees with shape",
    frame: () => topkFrame([19, 1, ...F16_ONE, 0]),
    code: "length-mismatch",
    message: /n = 19, expected n = 20/,
  },
  {
    name: "top-k values truncated",
    frame: () => topkFrame([20, 3, ...F16_ONE]),
    code: "length-mismatch",
  },
  {
    name: "top-k trailing bytes",
    frame: () => topkFrame([20, 1, ...F16_ONE, 4, 0]),
    code: "length-mismatch",
    message: /trailing/,
  },
  { name: "top-k payload too short", frame: () => topkFrame([20]), code: "length-mismatch" },
  // Payload content.
  { name: "top-k k > n", frame: () => topkFrame([20, 21, ...F16_ONE]), code: "bad-payload" },
  {
    name: "top-k index out of range",
    frame: () => topkFrame([20, 1, ...F16_ONE, 20]),
    code: "bad-payload",
    message: /past n = 20/,
  },
  {
    name: "top-k repeated index",
    frame: () => topkFrame([20, 2, ...F16_ONE, ...F16_ONE, 3, 0]),
    code: "bad-payload",
    message: /strictly ascend/,
  },
  {
    name: "top-k overlong varint",
    frame: () => topkFrame([20, 1, ...F16_ONE, 0x80, 0x80, 0x80, 0x80, 0x80, 0]),
    code: "bad-payload",
  },
  {
    name: "int8 q = −128",
    frame: () => payloadEdit(int8, 0, (p) => (p[24 + 5] = 0x80)),
    code: "bad-payload",
    message: /−128/,
  },
  {
    name: "int8 negative scale",
    frame: () => payloadEdit(int8, 0, (_, v) => v.setFloat32(4, -1, true)),
    code: "bad-payload",
    message: /scale of row 1 is -1/,
  },
  {
    name: "non-zero padding",
    frame: () => edited(f16, (f) => (f[f.length - 1] = 1)),
    code: "bad-payload",
    message: /padding/,
  },
  // Non-finite values (policy: never on the wire).
  {
    name: "f32 NaN",
    frame: () => payloadEdit(f32, 0, (_, v) => v.setFloat32(8, NaN, true)),
    code: "nonfinite",
    message: /value 2 is NaN/,
  },
  {
    name: "f32 −Inf",
    frame: () => payloadEdit(f32, 0, (_, v) => v.setFloat32(0, -Infinity, true)),
    code: "nonfinite",
  },
  {
    name: "f16 Inf",
    frame: () => payloadEdit(f16, 0, (p) => p.set(F16_INF, 4)),
    code: "nonfinite",
    message: /value 2 is Infinity/,
  },
  {
    name: "bf16 NaN",
    frame: () => payloadEdit(bf16, 0, (p) => p.set([0xc0, 0x7f], 2)),
    code: "nonfinite",
  },
  {
    name: "int8 scale that decodes to Inf",
    frame: () => payloadEdit(int8, 0, (_, v) => v.setFloat32(8, 3e38, true)),
    code: "nonfinite",
    message: /would decode to ±Infinity/,
  },
  {
    name: "int8 NaN scale",
    frame: () => payloadEdit(int8, 0, (_, v) => v.setFloat32(0, NaN, true)),
    code: "nonfinite",
  },
  { name: "top-k Inf value", frame: () => topkFrame([20, 1, ...F16_INF, 4]), code: "nonfinite" },
  // Direction.
  {
    name: "coordinator sends DELTA_Y",
    frame: () => deltaY,
    opts: { from: "coordinator" },
    code: "wrong-direction",
  },
  {
    name: "device sends GROUP_INPUT",
    frame: () => bf16,
    opts: { from: "device" },
    code: "wrong-direction",
  },
  // Control bodies.
  {
    name: "HELLO unknown role",
    frame: () =>
      withBody(control("HELLO"), concat(bodyOf(control("HELLO")).map((b, i) => (i === 2 ? 7 : b)))),
    code: "bad-body",
  },
  {
    name: "HELLO short",
    frame: () => withBody(control("HELLO"), new Uint8Array(7)),
    code: "bad-body",
  },
  {
    name: "HELLO versions reversed",
    frame: () => withBody(control("HELLO"), new Uint8Array([2, 1, 1, 1, 0, 16, 0, 0])),
    code: "bad-body",
  },
  {
    name: "HELLO unknown codec bit",
    frame: () => withBody(control("HELLO"), new Uint8Array([1, 1, 1, 0x21, 0, 16, 0, 0])),
    code: "bad-body",
  },
  {
    name: "ACK of unknown type",
    frame: () => withBody(control("ACK"), new Uint8Array([77, 0, 0, 0])),
    code: "bad-body",
  },
  {
    name: "STEP_END with a body",
    frame: () => withBody(control("STEP_END"), new Uint8Array(1)),
    code: "bad-body",
  },
  {
    name: "ERROR code 0",
    frame: () => withBody(control("ERROR"), new Uint8Array([0, 0, 0, 0])),
    code: "bad-body",
  },
  {
    name: "ERROR message not UTF-8",
    frame: () => withBody(control("ERROR"), new Uint8Array([3, 0, 2, 0, 0xc3, 0x28])),
    code: "bad-body",
    message: /UTF-8/,
  },
  {
    name: "ERROR length disagrees",
    frame: () => withBody(control("ERROR"), new Uint8Array([3, 0, 5, 0, 0x41])),
    code: "bad-body",
  },
  {
    name: "SELECT body not JSON",
    frame: () => withBody(control("SELECT"), new TextEncoder().encode("{active:")),
    code: "bad-body",
    message: /JSON/,
  },
  {
    name: "SELECT body not UTF-8",
    frame: () => withBody(control("SELECT"), new Uint8Array([0x7b, 0xc3, 0x28, 0x7d])),
    code: "bad-body",
  },
  {
    name: "SELECT missing a field",
    frame: () => {
      const { active: _, ...rest } = SELECT;
      return withBody(control("SELECT"), json(rest));
    },
    code: "bad-body",
    message: /active/,
  },
  {
    name: "SELECT unknown field",
    frame: () => withBody(control("SELECT"), json({ ...SELECT, extra: 1 })),
    code: "bad-body",
  },
  {
    name: "SELECT bad module key",
    frame: () => withBody(control("SELECT"), json({ ...SELECT, active: ["0.x"] })),
    code: "bad-body",
    message: /module key/,
  },
  {
    name: "SELECT module both active and probing",
    frame: () => withBody(control("SELECT"), json({ ...SELECT, active: ["2.k"] })),
    code: "bad-body",
    message: /twice/,
  },
  {
    name: "SELECT budget ρ > 1",
    frame: () => withBody(control("SELECT"), json({ ...SELECT, budget: { rho: 2 } })),
    code: "bad-body",
  },
  {
    name: "SELECT learning-rate scale not positive",
    frame: () => withBody(control("SELECT"), json({ ...SELECT, lr_scale: 0 })),
    code: "bad-body",
  },
  {
    name: "SELECT rank not a positive integer",
    frame: () => withBody(control("SELECT"), json({ ...SELECT, rank: 2.5 })),
    code: "bad-body",
    message: /rank/,
  },
  {
    name: "SELECT budget over an unknown unit",
    frame: () =>
      withBody(control("SELECT"), json({ ...SELECT, budget: { rho: 0.5, over: "bytes" } })),
    code: "bad-body",
  },
  {
    name: "SELECT reportAt not after its step",
    frame: () => withBody(control("SELECT"), json({ ...SELECT, reportAt: 4 })),
    code: "bad-body",
    message: /reportAt/,
  },
  {
    name: "SCORES unknown score name",
    frame: () => withBody(control("SCORES"), json({ ...SCORES, score: "magic" })),
    code: "bad-body",
  },
  {
    name: "SCORES value not a number",
    frame: () => withBody(control("SCORES"), json({ ...SCORES, values: { "0.q": "1" } })),
    code: "bad-body",
  },
  {
    name: "SCORES JSON array",
    frame: () => withBody(control("SCORES"), json([1, 2])),
    code: "bad-body",
  },
  {
    name: "device sends SELECT",
    frame: () => control("SELECT"),
    opts: { from: "device" },
    code: "wrong-direction",
  },
  {
    name: "coordinator sends SCORES",
    frame: () => control("SCORES"),
    opts: { from: "coordinator" },
    code: "wrong-direction",
  },
  {
    name: "control frame with tensors",
    frame: () => edited(control("STEP_END"), (f) => (f[OFF.tensorCount] = 1)),
    code: "bad-tensors",
  },
  {
    name: "control frame with modules",
    frame: () => edited(control("ACK"), (f) => (f[OFF.modules] = 1)),
    code: "bad-modules",
  },
  {
    name: "tensor type with a control body",
    frame: () => edited(control("STEP_END"), (f) => (f[OFF.type] = MESSAGE_TYPES.GRAD_HL)),
    code: "bad-tensors",
  },
];

Deno.test("protocol: every corrupt frame in the table is refused with its code and changes nothing", () => {
  const state = feedbackFingerprint(fb);
  const codes = new Set<string>();
  for (const row of TABLE) {
    const bytes = row.frame();
    const copy = bytes.slice();
    let err: unknown = null;
    try {
      decodeFrame(k, bytes, row.opts);
    } catch (e) {
      err = e;
    }
    if (!(err instanceof ProtocolError)) {
      throw new Error(
        `${row.name}: expected ProtocolError ${row.code}, got ${err ?? "a decoded frame"}`,
      );
    }
    assertEquals(err.code, row.code, `${row.name} (${err.message}):`);
    if (row.message && !row.message.test(err.message)) {
      throw new Error(
        `${row.name}: message ${JSON.stringify(err.message)} does not match ${row.message}`,
      );
    }
    assertEquals([...bytes], [...copy], `${row.name}: input bytes changed`);
    assertEquals(feedbackFingerprint(fb), state, `${row.name}: feedback state changed`);
    // Once the header is readable the error says which frame it was.
    const headerReadable = bytes.length >= HEADER_BYTES &&
      !["bad-magic", "bad-version", "unknown-type"].includes(row.code);
    assertEquals(err.frame?.session, headerReadable ? 41 : undefined, `${row.name}: err.frame`);
    const reply = decodeFrame(k, errorFrame(err, 41, 9));
    assert(reply.type === "ERROR" && reply.name === row.code, `${row.name}: ERROR reply`);
    codes.add(row.code);
  }
  // Every decode-side code is covered by at least one row.
  for (
    const code of [
      "bad-magic",
      "bad-version",
      "truncated",
      "trailing",
      "too-large",
      "unknown-type",
      "unknown-codec",
      "bad-flags",
      "bad-modules",
      "bad-tensors",
      "bad-shape",
      "length-mismatch",
      "bad-payload",
      "nonfinite",
      "crc-mismatch",
      "codec-not-allowed",
      "bad-body",
      "wrong-direction",
    ]
  ) assert(codes.has(code), `no table row for ${code}`);
});

Deno.test("protocol: the table's base frames themselves decode", () => {
  for (const f of [f32, f32NoCrc, deltaY, int8, f16, bf16, topk]) decodeFrame(k, f);
  for (const t of ["HELLO", "ACK", "STEP_END", "ERROR"] as const) decodeFrame(k, control(t));
  const sel = decodeFrame(k, control("SELECT"), { from: "coordinator" });
  assert(sel.type === "SELECT");
  assertEquals(sel.select, SELECT);
  const sc = decodeFrame(k, control("SCORES"), { from: "device" });
  assert(sc.type === "SCORES");
  assertEquals(sc.scores, SCORES);
  // a flipped payload bit without CRC is a valid (different) frame
  const g = f32NoCrc.slice();
  g[payloadAt(g).offset] ^= 1;
  const d = decodeFrame(k, reseal(g));
  assert(d.type === "GRAD_HL");
});
