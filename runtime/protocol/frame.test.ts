import {
  bitsF32,
  f16ToF32BitsRef,
  f32Bits,
  f32ToF16BitsRef,
  topkSelectRef,
} from "../../kernels/reference/codec.ts";
import { assert, assertEquals, assertThrows, randn, testKernels } from "../../tests/util.ts";
import { crc32 } from "./crc32.ts";
import { ProtocolError } from "./errors.ts";
import {
  DecodeBuffers,
  decodeFrame,
  decodeHeader,
  encodeControlFrame,
  encodeTensorFrame,
  errorFrame,
  type Frame,
  frameLength,
  type TensorFrame,
  type TensorFrameInput,
} from "./frame.ts";
import { TopkFeedback } from "./payload.ts";
import { checkDecoded, feedbackFingerprint, payloadAt, spreadValues } from "./testing.ts";
import {
  type Codec,
  codecAllowed,
  HEADER_BYTES,
  type Proj,
  TENSOR_LAYOUT,
  type TensorMessageType,
} from "./wire.ts";

const k = await testKernels();

const TENSOR_TYPES = Object.keys(TENSOR_LAYOUT) as TensorMessageType[];
const CODECS: Codec[] = ["f32", "f16", "bf16", "int8", "topk"];
const SHAPES = [[1], [7], [3, 5], [2, 3, 17], [2, 1, 3, 4], [1, 256, 33]];

function tensorsFrame(f: Frame): TensorFrame {
  assert("tensors" in f, `${f.type} is not a tensor frame`);
  return f as TensorFrame;
}

/** Modules and tensors of a frame of `type` whose tensors have shape `shape`. */
function frameInput(
  type: TensorMessageType,
  shape: number[],
  seed: number,
  values: (n: number, seed: number) => Float32Array,
): TensorFrameInput {
  const n = shape.reduce((a, b) => a * b, 1);
  const fields = { type, session: 0xfedcba98, step: 123456, layer: 11, micro: 3 };
  switch (TENSOR_LAYOUT[type]) {
    case "none":
      return { ...fields, tensors: [{ data: values(n, seed), shape }] };
    case "group":
      return { ...fields, modules: ["gate", "up"], tensors: [{ data: values(n, seed), shape }] };
    case "each":
      // Given out of order: the encoder writes projection order.
      return {
        ...fields,
        tensors: (["v", "q", "k"] as Proj[]).map((module, i) => ({
          module,
          data: values(n, seed + i),
          shape,
        })),
      };
  }
}

function checkBound(codec: Codec, x: Float32Array, y: Float32Array, shape: number[], what: string) {
  const cols = shape[shape.length - 1];
  for (let i = 0; i < x.length; i++) {
    let bound: number;
    if (codec === "f32") bound = 0;
    else if (codec === "f16") bound = 2 ** -11 * Math.abs(x[i]);
    else if (codec === "bf16") bound = 2 ** -8 * Math.abs(x[i]);
    else {
      const r = Math.floor(i / cols);
      let max = 0;
      for (let j = r * cols; j < (r + 1) * cols; j++) max = Math.max(max, Math.abs(x[j]));
      bound = (max / 127) / 2 * (1 + 1e-6) + 1e-30;
    }
    if (!(Math.abs(y[i] - x[i]) <= bound)) {
      throw new Error(`${what}: value ${i}: sent ${x[i]}, got ${y[i]}, error bound ${bound}`);
    }
  }
}

Deno.test("protocol: CRC-32 matches the IEEE check value and zlib", () => {
  assertEquals(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assertEquals(crc32(new Uint8Array(0)), 0);
  // slicing-by-8 path vs byte path on an odd length
  const bytes = new Uint8Array(1003).map((_, i) => (i * 31 + 7) & 0xff);
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let j = 0; j < 8; j++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  assertEquals(crc32(bytes), ~c >>> 0);
});

Deno.test("protocol: every tensor message type × codec round-trips within its error bound", () => {
  let cases = 0;
  for (const type of TENSOR_TYPES) {
    for (const codec of CODECS) {
      if (codec === "topk") continue; // its own test below
      for (const [si, shape] of SHAPES.entries()) {
        for (const crc of [true, false]) {
          // f16 / bf16 bounds hold in the normal range: magnitudes 2^-14 … 2^15.
          const input = frameInput(
            type,
            shape,
            100 * si + 1,
            (n, s) => spreadValues(n, s, -14, 15),
          );
          const bytes = encodeTensorFrame(k, input, { codec, crc });
          const f = tensorsFrame(decodeFrame(k, bytes));
          checkDecoded(f);
          assertEquals(
            [f.type, f.session, f.step, f.layer, f.micro, f.crc, f.byteLength],
            [type, 0xfedcba98, 123456, 11, 3, crc, bytes.length],
          );
          const sent = [...input.tensors].sort((a, b) =>
            (a.module ?? "").localeCompare(b.module ?? "")
          );
          const got = [...f.tensors].sort((a, b) => (a.module ?? "").localeCompare(b.module ?? ""));
          assertEquals(got.length, sent.length, `${type} tensor count`);
          if (TENSOR_LAYOUT[type] === "each") {
            assertEquals(f.modules, ["q", "k", "v"]);
            assertEquals(f.tensors.map((t) => t.module), ["q", "k", "v"], "projection order");
          } else if (TENSOR_LAYOUT[type] === "group") assertEquals(f.modules, ["gate", "up"]);
          else assertEquals(f.modules, []);
          for (const [i, t] of got.entries()) {
            assertEquals(t.codec, codec);
            assertEquals(t.shape, shape);
            checkBound(codec, sent[i].data as Float32Array, t.data, shape, `${type}/${codec}`);
          }
          cases++;
        }
      }
    }
  }
  assertEquals(cases, 7 * 4 * SHAPES.length * 2);
});

Deno.test("protocol: f32 is bit-exact, including subnormals and signed zero", () => {
  const x = new Float32Array([0, -0, 1e-45, -3e-39, 3.4e38, -1, Math.PI]);
  const f = tensorsFrame(decodeFrame(
    k,
    encodeTensorFrame(k, {
      type: "HIDDEN_H0",
      session: 1,
      step: 0,
      tensors: [{ data: x, shape: [7] }],
    }),
  ));
  assertEquals([...new Uint32Array(f.tensors[0].data.buffer)], [...new Uint32Array(x.buffer)]);
});

Deno.test("protocol: top-k keeps exactly the k largest as f16 and updates the error feedback", () => {
  const fb = new TopkFeedback(k);
  try {
    for (const type of ["GRAD_HL", "GROUP_GRAD", "GRAD_X_LORA"] as const) {
      for (const shape of [[1], [7], [3, 5], [2, 3, 17], [4, 64, 9]]) {
        const n = shape.reduce((a, b) => a * b, 1);
        const kCount = Math.max(1, Math.floor(n / 5));
        for (let step = 0; step < 3; step++) {
          const input = frameInput(type, shape, 1000 * step + n, (m, s) => randn(m, s));
          for (const t of input.tensors) (t as { k?: number }).k = kCount;
          const moduleOf = (m?: Proj) => m ?? (TENSOR_LAYOUT[type] === "group" ? "gate,up" : "-");
          // A stream restarts from zero when its size changes (a new shape here).
          const before = input.tensors.map((t) => {
            const r = fb.residual(type, 11, moduleOf(t.module));
            return r && r.length === n ? r : new Float32Array(n);
          });
          const bytes = encodeTensorFrame(k, input, { codec: "topk", feedback: fb });
          const f = tensorsFrame(decodeFrame(k, bytes));
          checkDecoded(f);
          for (const [i, t] of input.tensors.entries()) {
            const x = t.data as Float32Array;
            const y = new Float32Array(n);
            for (let j = 0; j < n; j++) y[j] = x[j] + before[i][j];
            const got = f.tensors.find((d) => d.module === (t.module ?? null))!;
            assertEquals(got.codec, "topk");
            const keep = new Set(topkSelectRef(y, kCount));
            assertEquals(keep.size, kCount);
            const after = fb.residual(type, 11, moduleOf(t.module))!;
            for (let j = 0; j < n; j++) {
              const expected = keep.has(j)
                ? bitsF32(f16ToF32BitsRef(f32ToF16BitsRef(f32Bits(y[j]))))
                : 0;
              if (got.data[j] !== expected) {
                throw new Error(
                  `${type} [${shape}] step ${step}: value ${j} ${got.data[j]} != ${expected}`,
                );
              }
              const residual = Math.fround(y[j] - got.data[j]);
              if (after[j] !== residual) {
                throw new Error(`${type} residual ${j}: ${after[j]} != ${residual}`);
              }
            }
          }
        }
      }
    }
    assertEquals(fb.size, 1 + 3 + 1, "one stream per (type, layer, module)");
    assert(fb.keys().includes("GROUP_GRAD/11/q") && fb.keys().includes("GRAD_X_LORA/11/gate,up"));
  } finally {
    fb.free();
  }
});

Deno.test("protocol: top-k without feedback keeps no state; default k is ⌈ratio·n⌉", () => {
  const x = randn(200, 5);
  const bytes = encodeTensorFrame(k, {
    type: "GRAD_HL",
    session: 1,
    step: 1,
    tensors: [{ data: x, shape: [10, 20], codec: "topk" }],
  }, { topkRatio: 0.05 });
  const t = tensorsFrame(decodeFrame(k, bytes)).tensors[0];
  assertEquals(t.data.filter((v) => v !== 0).length, 10);
});

Deno.test("protocol: top-k is refused for activations and hidden states", () => {
  for (const type of TENSOR_TYPES) {
    const ok = codecAllowed(type, "topk");
    assertEquals(ok, ["GRAD_HL", "GROUP_GRAD", "GRAD_X_LORA"].includes(type), type);
    if (ok) continue;
    const e = assertThrows(() =>
      encodeTensorFrame(k, frameInput(type, [4], 1, randn), { codec: "topk" })
    );
    assert(e instanceof ProtocolError && e.code === "codec-not-allowed", e.message);
  }
});

Deno.test("protocol: WasmArray input (same and another Kernels) encodes like Float32Array", async () => {
  const other = await testKernels({ noRelaxed: true });
  const x = randn(3 * 7, 9);
  for (const codec of CODECS) {
    const base = { type: "GRAD_HL" as const, session: 1, step: 2 };
    const a = encodeTensorFrame(k, { ...base, tensors: [{ data: x, shape: [3, 7], codec }] });
    const w = k.from(x);
    const w2 = other.from(x);
    try {
      const b = encodeTensorFrame(k, { ...base, tensors: [{ data: w, shape: [3, 7], codec }] });
      const c = encodeTensorFrame(k, { ...base, tensors: [{ data: w2, shape: [3, 7], codec }] });
      assertEquals([...b], [...a], `${codec} same Kernels`);
      assertEquals([...c], [...a], `${codec} other Kernels`);
      assertEquals([...w.data], [...x], "input untouched");
    } finally {
      w.free();
      w2.free();
    }
  }
});

Deno.test("protocol: control frames round-trip", () => {
  const base = { session: 5, step: 6, layer: 0, micro: 0 };
  const hello = {
    role: "coordinator" as const,
    minVersion: 1,
    maxVersion: 3,
    codecs: ["f32", "bf16", "topk"] as Codec[],
    maxFrameBytes: 8 << 20,
  };
  const h = decodeFrame(k, encodeControlFrame({ type: "HELLO", ...base, hello }));
  assert(h.type === "HELLO");
  assertEquals(h.hello, hello);
  const pad = new Uint8Array([1, 2, 3]);
  for (const type of ["PING", "PONG"] as const) {
    const p = decodeFrame(
      k,
      encodeControlFrame({ type, ...base, nonce: 0xffffffff, padding: pad }),
    );
    assert(p.type === type);
    assertEquals([p.nonce, [...p.padding]], [0xffffffff, [1, 2, 3]]);
  }
  const a = decodeFrame(k, encodeControlFrame({ type: "ACK", ...base, acked: "GRAD_X_LORA" }));
  assert(a.type === "ACK" && a.acked === "GRAD_X_LORA");
  const s = decodeFrame(k, encodeControlFrame({ type: "STEP_END", ...base }, { crc: false }));
  assertEquals([s.type, s.crc, s.byteLength], ["STEP_END", false, HEADER_BYTES]);
  const e = decodeFrame(
    k,
    encodeControlFrame({ type: "ERROR", ...base, code: 1001, message: "device busy — retry" }),
  );
  assert(e.type === "ERROR");
  assertEquals([e.code, e.name, e.message], [1001, null, "device busy — retry"]);
});

Deno.test("protocol: errorFrame answers a malformed frame with its code and header fields", () => {
  const good = encodeTensorFrame(k, {
    type: "DELTA_Y",
    session: 77,
    step: 8,
    layer: 2,
    micro: 1,
    tensors: [{ module: "q", data: randn(6, 1), shape: [2, 3] }],
  });
  const bad = good.slice(0, good.length - 1);
  let err: unknown;
  try {
    decodeFrame(k, bad);
  } catch (e) {
    err = e;
  }
  assert(err instanceof ProtocolError && err.code === "truncated");
  assertEquals(err.frame, { type: "DELTA_Y", session: 77, step: 8, layer: 2, micro: 1 });
  const reply = decodeFrame(k, errorFrame(err));
  assert(reply.type === "ERROR");
  assertEquals([reply.name, reply.code, reply.session, reply.step, reply.layer], [
    "truncated",
    3,
    77,
    8,
    2,
  ]);
  assert(reply.message.includes("truncated"), reply.message);
  // explicit session/step win; a non-protocol error is "internal"; long messages are cut
  const other = decodeFrame(k, errorFrame(new Error("é".repeat(2000)), 1, 2));
  assert(other.type === "ERROR");
  assertEquals([other.name, other.session, other.step], ["internal", 1, 2]);
  assert(other.message.length === 512, `${other.message.length}`);
});

Deno.test("protocol: frameLength and decodeHeader read a frame off a byte stream", () => {
  const f = encodeTensorFrame(k, {
    type: "GROUP_INPUT",
    session: 3,
    step: 4,
    modules: ["q", "k"],
    tensors: [{ data: randn(40, 2), shape: [4, 10], codec: "bf16" }],
  });
  assertEquals(frameLength(f.subarray(0, 10)), null);
  assertEquals(frameLength(f.subarray(0, HEADER_BYTES)), f.length);
  const e = assertThrows(() => frameLength(new TextEncoder().encode("GET / HTTP/1.1")));
  assert(e instanceof ProtocolError && e.code === "bad-magic");
  const h = decodeHeader(f);
  assertEquals([h.type, h.modules, h.byteLength], ["GROUP_INPUT", ["q", "k"], f.length]);
  const p = payloadAt(f);
  assertEquals(p.length, 80);
  assertEquals(p.offset % 4, 0, "payload 4-byte aligned");
});

Deno.test("protocol: decoding with `from` refuses frames the sender may not send", () => {
  const f = encodeTensorFrame(k, {
    type: "GRAD_HL",
    session: 3,
    step: 4,
    tensors: [{ data: randn(4, 2), shape: [4] }],
  });
  decodeFrame(k, f, { from: "device" });
  const e = assertThrows(() => decodeFrame(k, f, { from: "coordinator" }));
  assert(e instanceof ProtocolError && e.code === "wrong-direction", e.message);
  decodeFrame(k, encodeControlFrame({ type: "PING", session: 1, step: 1, nonce: 1 }), {
    from: "coordinator",
  });
});

Deno.test("protocol: failed encodes change neither the feedback residuals nor the inputs", () => {
  const fb = new TopkFeedback(k);
  try {
    const q = randn(24, 1), v = randn(12, 2);
    const frame = (qData: Float32Array, opts = {}) =>
      encodeTensorFrame(k, {
        type: "GROUP_GRAD",
        session: 1,
        step: 1,
        tensors: [
          { module: "q", data: qData, shape: [3, 8], k: 5 },
          { module: "v", data: v, shape: [3, 4], k: 2 },
        ],
      }, { codec: "topk", feedback: fb, ...opts });
    frame(q); // state exists now
    const state = feedbackFingerprint(fb);
    const qBad = q.slice();
    qBad[20] = NaN; // fails on the first tensor (after nothing) …
    const vBad = v.slice();
    vBad[3] = Infinity;
    const cases: [string, () => unknown, string][] = [
      ["NaN", () => frame(qBad), "nonfinite"],
      [
        "Inf in the second tensor",
        () =>
          encodeTensorFrame(k, {
            type: "GROUP_GRAD",
            session: 1,
            step: 1,
            tensors: [
              { module: "q", data: q, shape: [3, 8], k: 5 },
              { module: "v", data: vBad, shape: [3, 4], k: 2 },
            ],
          }, { codec: "topk", feedback: fb }),
        "nonfinite",
      ],
      ["too large", () => frame(q, { limits: { maxFrameBytes: 64 } }), "too-large"],
      ["too many elements", () => frame(q, { limits: { maxElements: 30 } }), "bad-shape"],
    ];
    for (const [name, run, code] of cases) {
      const before = feedbackFingerprint(fb);
      const e = assertThrows(run);
      assert(e instanceof ProtocolError, `${name}: ${e}`);
      assertEquals(e.code, code, name);
      assertEquals(feedbackFingerprint(fb), before, name);
      assertEquals(feedbackFingerprint(fb), state, name);
    }
    // x + residual can overflow to Inf although both are finite: refused, residual kept.
    const big = new Float32Array(24).fill(3.4e38);
    frame(big); // sends ±65504, the residual keeps ≈ 3.4e38
    const kept = feedbackFingerprint(fb);
    const overflow = assertThrows(() => frame(big));
    assert(overflow instanceof ProtocolError && overflow.code === "nonfinite", overflow.message);
    assertEquals(feedbackFingerprint(fb), kept, "overflow");
    assert(Number.isNaN(qBad[20]) && vBad[3] === Infinity, "inputs untouched");
    // f16 overflow is refused, not sent as Inf
    const e = assertThrows(() =>
      encodeTensorFrame(k, {
        type: "HIDDEN_HL",
        session: 1,
        step: 1,
        tensors: [{ data: new Float32Array([1, 70000]), shape: [2], codec: "f16" }],
      })
    );
    assert(
      e instanceof ProtocolError && e.code === "nonfinite" && /overflows f16/.test(e.message),
      e.message,
    );
    // so is an int8 row whose q·scale would round past the f32 maximum on decode
    const near = new Float32Array([3.4028234e38, 1]);
    const e8 = assertThrows(() =>
      encodeTensorFrame(k, {
        type: "HIDDEN_HL",
        session: 1,
        step: 1,
        tensors: [{ data: near, shape: [1, 2], codec: "int8" }],
      })
    );
    assert(e8 instanceof ProtocolError && e8.code === "nonfinite", e8.message);
  } finally {
    fb.free();
  }
});

Deno.test("protocol: encoder argument errors are ProtocolErrors a person can act on", () => {
  const x = randn(6, 1);
  const cases: [string, TensorFrameInput, string, RegExp][] = [
    [
      "shape",
      { type: "GRAD_HL", session: 1, step: 1, tensors: [{ data: x, shape: [4] }] },
      "length-mismatch",
      /6 values, shape \[4\] needs 4/,
    ],
    [
      "rank",
      { type: "GRAD_HL", session: 1, step: 1, tensors: [{ data: x, shape: [1, 1, 1, 2, 3] }] },
      "bad-shape",
      /rank 5/,
    ],
    [
      "groups",
      {
        type: "DELTA_Y",
        session: 1,
        step: 1,
        tensors: [{ module: "q", data: x, shape: [6] }, { module: "o", data: x, shape: [6] }],
      },
      "bad-modules",
      /several input groups/,
    ],
    [
      "no modules",
      { type: "GROUP_INPUT", session: 1, step: 1, tensors: [{ data: x, shape: [6] }] },
      "bad-modules",
      /names none/,
    ],
    [
      "two tensors",
      {
        type: "GRAD_HL",
        session: 1,
        step: 1,
        tensors: [{ data: x, shape: [6] }, { data: x, shape: [6] }],
      },
      "bad-tensors",
      /1 tensor/,
    ],
    [
      "session",
      { type: "GRAD_HL", session: -1, step: 1, tensors: [{ data: x, shape: [6] }] },
      "bad-argument",
      /session/,
    ],
    [
      "layer",
      { type: "GRAD_HL", session: 1, step: 1, layer: 70000, tensors: [{ data: x, shape: [6] }] },
      "bad-argument",
      /layer/,
    ],
  ];
  for (const [name, input, code, re] of cases) {
    const e = assertThrows(() => encodeTensorFrame(k, input), re);
    assert(e instanceof ProtocolError, name);
    assertEquals(e.code, code, name);
  }
});

Deno.test("protocol: encoding and decoding free their wasm scratch, on success and on failure", () => {
  const live = k.liveBytes;
  const fb = new TopkFeedback(k);
  const x = randn(60, 3);
  for (const codec of CODECS) {
    const f = encodeTensorFrame(k, {
      type: "GRAD_HL",
      session: 1,
      step: 1,
      tensors: [{ data: x, shape: [6, 10], codec }],
    }, { feedback: fb });
    decodeFrame(k, f);
    const bad = f.slice();
    bad[bad.length - 6] ^= 0xff; // CRC mismatch
    assertThrows(() => decodeFrame(k, bad));
    const nan = x.slice();
    nan[7] = NaN;
    assertThrows(() =>
      encodeTensorFrame(k, {
        type: "GRAD_HL",
        session: 1,
        step: 1,
        tensors: [{ data: nan, shape: [6, 10], codec }],
      }, { feedback: fb })
    );
  }
  assertEquals(k.liveBytes - live > 0, true, "the top-k residual is kept");
  fb.free();
  assertEquals(k.liveBytes, live);
});

Deno.test("protocol: f16/bf16 refuse NaN and ±Inf at any index, naming the value; bf16 decodes bit-exact", () => {
  for (const codec of ["f16", "bf16"] as const) {
    for (const n of [1, 2, 7, 8]) {
      for (let at = 0; at < n; at++) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          const x = new Float32Array(n).fill(0.5);
          x[at] = bad;
          const e = assertThrows(() =>
            encodeTensorFrame(k, {
              type: "HIDDEN_HL",
              session: 1,
              step: 1,
              tensors: [{ data: x, shape: [n], codec }],
            })
          );
          assert(e instanceof ProtocolError && e.code === "nonfinite", `${codec} ${n}@${at}`);
          assert(
            e.message.includes(`value ${at} is ${bad}`) && !/overflows/.test(e.message),
            e.message,
          );
        }
      }
    }
  }
  // bf16 values (x already representable) come back exactly, signs and subnormals included.
  const bits = [0x0000, 0x8000, 0x3f80, 0xc020, 0x3800, 0x800a, 0x0001, 0x7f7f, 0xff7f];
  const x = new Float32Array(new Uint32Array(bits.map((b) => b << 16)).buffer);
  const f = decodeFrame(
    k,
    encodeTensorFrame(k, {
      type: "HIDDEN_HL",
      session: 1,
      step: 1,
      tensors: [{ data: x, shape: [x.length], codec: "bf16" }],
    }),
    { from: "coordinator" },
  );
  const got = (f as { tensors: { data: Float32Array }[] }).tensors[0].data;
  assertEquals([...new Uint32Array(got.buffer, got.byteOffset, got.length)], [
    ...new Uint32Array(x.buffer),
  ]);
  assertEquals(Object.is(got[1], -0), true);
});

Deno.test("protocol: decoding into reused DecodeBuffers gives the values of a plain decode, kept for one more frame", () => {
  const buffers = new DecodeBuffers();
  const frames = CODECS.map((codec, i) =>
    encodeTensorFrame(k, {
      type: "GROUP_GRAD",
      session: 3,
      step: i,
      layer: 1,
      tensors: [
        { module: "q", data: randn(6 * 8, 10 + i), shape: [6, 8], codec },
        { module: "v", data: randn(6 * 4, 20 + i), shape: [6, 4], codec },
      ],
    }, { topkRatio: 0.5, crc: false })
  );
  let previous: { got: Float32Array[]; want: Float32Array[] } | null = null;
  for (const bytes of [...frames, ...frames]) {
    const want = tensorsFrame(decodeFrame(k, bytes)).tensors.map((t) => t.data);
    const got = tensorsFrame(decodeFrame(k, bytes, { buffers })).tensors.map((t) => t.data);
    assertEquals(got.map((x) => [...x]), want.map((x) => [...x]));
    // The frame before is still intact (two generations alternate).
    if (previous !== null) {
      assertEquals(previous.got.map((x) => [...x]), previous.want.map((x) => [...x]));
    }
    previous = { got, want };
  }
  // A refused payload is still refused with buffers (and throws the same error).
  const bad = frames[0].slice();
  new DataView(bad.buffer).setFloat32(payloadAt(bad, 0).offset + 4, NaN, true);
  const e = assertThrows(() => decodeFrame(k, bad, { buffers }));
  assert(e instanceof ProtocolError && e.code === "nonfinite", String(e));
});

Deno.test("protocol: GROUP_GRAD's no-∂X flag round-trips, and no other type may carry it", () => {
  const grad = (noDx?: boolean) =>
    encodeTensorFrame(k, {
      type: "GROUP_GRAD",
      session: 2,
      step: 5,
      layer: 1,
      ...(noDx === undefined ? {} : { noDx }),
      tensors: [{ module: "gate", data: randn(12, 9), shape: [3, 4] }],
    });
  const flagged = decodeFrame(k, grad(true));
  assertEquals(flagged.noDx, true);
  assertEquals(flagged.type, "GROUP_GRAD");
  assertEquals(decodeFrame(k, grad(false)).noDx, undefined);
  assertEquals(decodeFrame(k, grad()).noDx, undefined);
  // The flag costs no bytes.
  assertEquals(grad(true).length, grad().length);
  const e = assertThrows(() =>
    encodeTensorFrame(k, {
      type: "DELTA_Y",
      session: 2,
      step: 5,
      noDx: true,
      tensors: [{ module: "gate", data: randn(12, 9), shape: [3, 4] }],
    })
  );
  assert(/GROUP_GRAD flag/.test(e.message), e.message);
});
