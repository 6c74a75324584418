/**
 * Randomized mutation test: valid frames of every type and codec get bytes flipped, replaced,
 * inserted, deleted, truncated or appended (seeded). Every mutated frame must either decode to a
 * frame that keeps the invariants or throw ProtocolError — never another exception, never a hang
 * — and leave the input bytes and the sender's error-feedback state unchanged.
 */
import { assert, assertEquals, randn, rng, testKernels } from "../../tests/util.ts";
import { ProtocolError } from "./errors.ts";
import { decodeFrame, type DecodeOptions, encodeTensorFrame, errorFrame } from "./frame.ts";
import { TopkFeedback } from "./payload.ts";
import { checkDecoded, feedbackFingerprint, reseal, sampleFrames } from "./testing.ts";
import { HEADER_BYTES, type Proj } from "./wire.ts";

const k = await testKernels();
const SEED = 20240611;
const FRAMES = 10_000;

const INTERESTING = [0, 1, 2, 3, 4, 5, 0x7f, 0x80, 0xff, 0xfe];
const INTERESTING_U32 = [0, 1, 2, 4, 7, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];

/** One random edit of `f` (a new array). Positions favour the header and sub-headers. */
function mutate(f: Uint8Array, r: () => number): Uint8Array {
  const pick = (n: number) => Math.floor(r() * n);
  const pos = (len: number) =>
    len === 0 ? 0 : r() < 0.5 ? pick(Math.min(len, HEADER_BYTES + 24)) : pick(len);
  switch (pick(8)) {
    case 0: { // flip one bit
      const g = f.slice();
      if (g.length) g[pos(g.length)] ^= 1 << pick(8);
      return g;
    }
    case 1: { // set a byte
      const g = f.slice();
      if (g.length) {
        g[pos(g.length)] = r() < 0.5 ? INTERESTING[pick(INTERESTING.length)] : pick(256);
      }
      return g;
    }
    case 2: { // overwrite 4 bytes with an interesting u32
      const g = f.slice();
      const at = pos(g.length);
      if (at + 4 <= g.length) {
        new DataView(g.buffer).setUint32(at, INTERESTING_U32[pick(INTERESTING_U32.length)], true);
      }
      return g;
    }
    case 3: { // insert bytes
      const at = pos(f.length + 1), n = 1 + pick(4);
      const g = new Uint8Array(f.length + n);
      g.set(f.subarray(0, at));
      for (let i = 0; i < n; i++) g[at + i] = pick(256);
      g.set(f.subarray(at), at + n);
      return g;
    }
    case 4: { // delete bytes
      const at = pos(f.length), n = 1 + pick(4);
      const tail = f.subarray(Math.min(f.length, at + n));
      const g = new Uint8Array(at + tail.length);
      g.set(f.subarray(0, at));
      g.set(tail, at);
      return g;
    }
    case 5: // truncate
      return f.slice(0, pick(f.length));
    case 6: { // append junk
      const n = 1 + pick(8);
      const g = new Uint8Array(f.length + n);
      g.set(f);
      for (let i = f.length; i < g.length; i++) g[i] = pick(256);
      return g;
    }
    default: { // swap two bytes
      const g = f.slice();
      if (g.length > 1) {
        const a = pos(g.length), b = pos(g.length);
        [g[a], g[b]] = [g[b], g[a]];
      }
      return g;
    }
  }
}

Deno.test(`protocol: ${FRAMES} mutated frames decode validly or throw ProtocolError`, () => {
  const fb = new TopkFeedback(k);
  try {
    const corpus = sampleFrames(k, fb);
    assert(corpus.length >= 40, `corpus of ${corpus.length}`);
    const r = rng(SEED);
    const state = feedbackFingerprint(fb);
    const codes = new Map<string, number>();
    let decoded = 0;
    for (let i = 0; i < FRAMES; i++) {
      let bytes = corpus[Math.floor(r() * corpus.length)];
      const edits = 1 + Math.floor(r() * 3);
      for (let e = 0; e < edits; e++) bytes = mutate(bytes, r);
      // Half the time, reseal the CRC so that the checks behind it are reached too.
      if (r() < 0.5 && bytes.length >= HEADER_BYTES) bytes = reseal(bytes);
      const copy = bytes.slice();
      const opts: DecodeOptions = r() < 0.2
        ? { from: r() < 0.5 ? "device" : "coordinator" }
        : r() < 0.1
        ? {
          limits: {
            maxFrameBytes: 64 + Math.floor(r() * 256),
            maxElements: 1 + Math.floor(r() * 64),
          },
        }
        : {};
      try {
        const f = decodeFrame(k, bytes, opts);
        checkDecoded(f);
        decoded++;
      } catch (e) {
        if (!(e instanceof ProtocolError)) {
          const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
          throw new Error(`mutation ${i} (seed ${SEED}) threw ${e}; frame ${hex}`);
        }
        codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
        if (i % 16 === 0) { // the refusal can always be answered
          const reply = decodeFrame(k, errorFrame(e));
          assert(reply.type === "ERROR" && reply.name === e.code, `mutation ${i}: ERROR reply`);
        }
      }
      if (bytes.length !== copy.length || bytes.some((b, j) => b !== copy[j])) {
        throw new Error(`mutation ${i}: decoding changed the input bytes`);
      }
      if (i % 64 === 0) {
        assertEquals(feedbackFingerprint(fb), state, `mutation ${i}: feedback state`);
      }
    }
    assertEquals(feedbackFingerprint(fb), state, "feedback state");
    // The mutations reach deep: many distinct refusals, and some frames still decode.
    assert(codes.size >= 12, `only ${[...codes.keys()]} codes were hit`);
    assert(decoded > 100, `only ${decoded} mutated frames decoded`);
  } finally {
    fb.free();
  }
});

Deno.test("protocol: randomized bad encodes throw ProtocolError and keep the feedback state", () => {
  const fb = new TopkFeedback(k);
  try {
    const r = rng(SEED + 1);
    let failures = 0;
    for (let i = 0; i < 500; i++) {
      const rows = 1 + Math.floor(r() * 5), cols = 1 + Math.floor(r() * 9);
      const mods: Proj[] = r() < 0.5 ? ["q", "k", "v"] : ["gate", "up"];
      const tensors = mods.map((module, j) => ({
        module,
        data: randn(rows * cols, 1000 * i + j),
        shape: [rows, cols],
        k: 1 + Math.floor(r() * rows * cols),
      }));
      let limits = {};
      switch (Math.floor(r() * 5)) {
        case 0: // a non-finite value in a random tensor
          tensors[Math.floor(r() * tensors.length)].data[Math.floor(r() * rows * cols)] = r() < 0.5
            ? NaN
            : -Infinity;
          break;
        case 1: // the data disagrees with the shape
          tensors[Math.floor(r() * tensors.length)].shape = [rows, cols + 1];
          break;
        case 2: // the frame would exceed a small limit
          limits = { maxFrameBytes: 40 + Math.floor(r() * 60) };
          break;
        case 3: // k out of range
          tensors[Math.floor(r() * tensors.length)].k = rows * cols + 1;
          break;
        default: // valid: the state moves on
      }
      const before = feedbackFingerprint(fb);
      try {
        encodeTensorFrame(k, { type: "GROUP_GRAD", session: 1, step: i, layer: i % 3, tensors }, {
          codec: "topk",
          feedback: fb,
          limits,
        });
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw new Error(`encode ${i} threw ${e}`);
        assertEquals(feedbackFingerprint(fb), before, `encode ${i} (${e.code}) changed the state`);
        failures++;
      }
    }
    assert(failures > 200 && failures < 500, `${failures} failures`);
  } finally {
    fb.free();
  }
});
