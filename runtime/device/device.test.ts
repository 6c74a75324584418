import { assert, assertClose, assertEquals } from "../../tests/util.ts";
import { sharedText, startStack } from "../../coordinator/step_testing.ts";
import { Kernels } from "../../kernels/mod.ts";
import { LlamaModel } from "../model/llama.ts";
import { loadLlama2cTokenizer } from "../tokenizer/llama2c.ts";
import { loadStories, TOK512 } from "../model/testing.ts";
import { train } from "../train/train.ts";
import { nllOfIds } from "../train/nll.ts";
import { loraFromAdapter } from "../train/adapter.ts";
import type { Adapter } from "../adapters/peft.ts";
import { decodeHeader, HEADER_BYTES, MESSAGE_TYPES, type MessageType } from "../protocol/mod.ts";
import { runDevice } from "./device.ts";

const stories = loadStories();
const tokenizer = loadLlama2cTokenizer(Deno.readFileSync(TOK512), stories.config.vocabSize);
const TEXT = sharedText("tinyshakespeare.txt", 12_000);

/** Largest |a−b| / max(|b|, floor) over two adapters' A and B. */
function adapterDiff(a: Adapter, b: Adapter): { worst: number; key: string } {
  assertEquals([...a.modules.keys()].sort(), [...b.modules.keys()].sort(), "adapter modules");
  let worst = 0, key = "";
  for (const [k, m] of a.modules) {
    const o = b.modules.get(k)!;
    for (const [x, y] of [[m.A, o.A], [m.B, o.B]]) {
      for (let i = 0; i < x.length; i++) {
        const d = Math.abs(x[i] - y[i]);
        if (d > worst) [worst, key] = [d, k];
      }
    }
  }
  return { worst, key };
}

Deno.test("equivalence: 20 distributed f32 steps over a loopback WebSocket equal local train() (losses, A, B within 1e-5)", async () => {
  const job = { rank: 4, alpha: 8, lr: 1e-2, batch: 2, seq_len: 32, steps: 20, seed: 7 };
  const k = await Kernels.load({ threads: 1 });
  const model = new LlamaModel(k, stories);
  const local = await train({
    model,
    tokenizer,
    text: TEXT,
    steps: job.steps,
    rank: job.rank,
    alpha: job.alpha,
    lr: job.lr,
    batch: job.batch,
    seqLen: job.seq_len,
    seed: job.seed,
  });
  local.lora!.free();
  model.free();
  k.close();

  const stack = await startStack();
  try {
    const d = await stack.device("equivalence");
    await stack.job({ ...job, devices: [d.id] });
    const r = await runDevice({ coordinatorUrl: stack.url, token: d.token, text: TEXT });
    assertEquals(r.losses.length, job.steps);
    assertClose(r.losses, local.losses, { atol: 0, rtol: 1e-5, msg: "per-step losses" });
    assert(local.losses[19] < local.losses[0], "training moved the loss");
    const diff = adapterDiff(r.adapter, local.adapter);
    assert(diff.worst <= 1e-5, `adapters differ by ${diff.worst} at ${diff.key}`);
    assertEquals(r.errors, [], "no refused frames");
    assertEquals(r.activeModules.length, 5 * 7, "every module active");
  } finally {
    await stack.close();
  }
});

Deno.test("pipelined micro-batches (2 in flight, unequal sizes) equal one micro-batch and one-at-a-time", async () => {
  const job = { rank: 4, alpha: 8, lr: 1e-2, batch: 5, seq_len: 16, steps: 4, seed: 11 };
  const stack = await startStack({ record: true });
  try {
    const run = async (name: string, microBatch?: number, pipeline?: number) => {
      const d = await stack.device(name);
      const jobId = await stack.job({ ...job, devices: [d.id] });
      const before = stack.received.frames.length;
      const r = await runDevice({
        coordinatorUrl: stack.url,
        token: d.token,
        text: TEXT,
        jobId,
        microBatch,
        pipeline,
      });
      assertEquals(r.errors, [], `${name}: no refused frames`);
      return { r, frames: stack.received.frames.slice(before).map((f) => decodeHeader(f)) };
    };
    const whole = await run("whole");
    const serial = await run("serial", 2, 1);
    const piped = await run("piped", 2, 2);
    // Micro-batches of 2, 2 and 1 rows: 3 HIDDEN_H0 per step, and the pipelined run really
    // overlaps them (micro 1's HIDDEN_H0 goes out before micro 0's GRAD_HL).
    const h0s = piped.frames.filter((f) => f.type === "HIDDEN_H0" && f.step === 0);
    assertEquals(h0s.map((f) => f.micro), [0, 1, 2]);
    const order = piped.frames.filter((f) => f.step === 0).map((f) => `${f.type}/${f.micro}`);
    assert(order.indexOf("HIDDEN_H0/1") < order.indexOf("GRAD_HL/0"), order.join(" "));
    const serialOrder = serial.frames.filter((f) => f.step === 0)
      .map((f) => `${f.type}/${f.micro}`);
    assert(serialOrder.indexOf("HIDDEN_H0/1") > serialOrder.indexOf("GRAD_HL/0"));
    for (const other of [serial, piped]) {
      assertClose(other.r.losses, whole.r.losses, { atol: 0, rtol: 1e-5, msg: "losses" });
      const diff = adapterDiff(other.r.adapter, whole.r.adapter);
      assert(diff.worst <= 1e-5, `adapters differ by ${diff.worst} at ${diff.key}`);
    }
  } finally {
    await stack.close();
  }
});

/** Where any of `patterns` (each ≥ 4 bytes) occurs in `haystacks`, or null. */
function findAny(
  haystacks: readonly Uint8Array[],
  patterns: readonly Uint8Array[],
): { pattern: number; haystack: number; at: number } | null {
  const byPrefix = new Map<number, number[]>();
  const u32 = (b: Uint8Array, i: number) =>
    (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
  patterns.forEach((p, i) => {
    const key = u32(p, 0);
    const list = byPrefix.get(key);
    if (list) list.push(i);
    else byPrefix.set(key, [i]);
  });
  for (const [h, hay] of haystacks.entries()) {
    for (let at = 0; at + 4 <= hay.length; at++) {
      const list = byPrefix.get(u32(hay, at));
      if (list === undefined) continue;
      for (const pi of list) {
        const p = patterns[pi];
        if (at + p.length > hay.length) continue;
        let same = true;
        for (let j = 4; j < p.length && same; j++) same = hay[at + j] === p[j];
        if (same) return { pattern: pi, haystack: h, at };
      }
    }
  }
  return null;
}

/** Every run of 8 consecutive ids as int32 and uint16, little- and big-endian. */
function idPatterns(ids: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let s = 0; s + 8 <= ids.length; s++) {
    const run = ids.slice(s, s + 8);
    for (const little of [true, false]) {
      const i32 = new Uint8Array(32), u16 = new Uint8Array(16);
      const v32 = new DataView(i32.buffer), v16 = new DataView(u16.buffer);
      run.forEach((id, j) => {
        v32.setInt32(4 * j, id, little);
        v16.setUint16(2 * j, id, little);
      });
      out.push(i32, u16);
    }
  }
  return out;
}

Deno.test("privacy: the coordinator receives no text, token ids or labels; only §2 frame types", async () => {
  const text = TEXT.slice(0, 4000);
  const stack = await startStack({ record: true });
  try {
    const d = await stack.device("privacy");
    await stack.job({ rank: 4, batch: 2, seq_len: 16, steps: 3, devices: [d.id] });
    const r = await runDevice({ coordinatorUrl: stack.url, token: d.token, text });
    assertEquals(r.losses.length, 3);
    const received = stack.received;
    assert(received.frames.length > 100, `frames recorded: ${received.frames.length}`);
    const http = received.http.map((t) => new TextEncoder().encode(t));
    const all = [...received.frames, ...http];

    // The text: every 16-byte window of its UTF-8.
    const utf8 = new TextEncoder().encode(text);
    const textWindows: Uint8Array[] = [];
    for (let i = 0; i + 16 <= utf8.length; i++) textWindows.push(utf8.subarray(i, i + 16));
    const textHit = findAny(all, textWindows);
    assertEquals(textHit, null, "a piece of the text reached the coordinator");

    // Token ids, and so the labels (the same ids shifted by one): any 8 in a row.
    const ids = tokenizer.encode(text, { bos: true });
    assert(ids.length > 500);
    const idHit = findAny(all, idPatterns(ids));
    assertEquals(idHit, null, "a run of 8 token ids reached the coordinator");

    // The sanity check of the search itself: a frame carrying ids would be found.
    const planted = new Uint8Array(64);
    planted.set(idPatterns(ids)[40], 7);
    assert(findAny([planted], idPatterns(ids)) !== null, "the search finds planted ids");

    const types = new Set<MessageType>();
    for (const f of received.frames) types.add(decodeHeader(f).type);
    // PONG answers the coordinator's link probe (DLORA.md §4): it echoes the PING's zero
    // padding and carries nothing of the device's.
    const pongs = received.frames.filter((f) => decodeHeader(f).type === "PONG");
    for (const f of pongs) {
      assert(f.subarray(HEADER_BYTES + 4).every((b) => b === 0), "a PONG carried data");
    }
    types.delete("PONG");
    assertEquals(
      [...types].sort(),
      ["DELTA_Y", "GRAD_HL", "GRAD_X_LORA", "HELLO", "HIDDEN_H0", "STEP_END"],
      "frame types the device sent",
    );
    for (const t of types) assert(MESSAGE_TYPES[t] !== undefined);
  } finally {
    await stack.close();
  }
});

Deno.test("bf16 and f16 transport train like f32: losses and held-out NLL close", async () => {
  const text = TEXT;
  const heldOut = tokenizer.encode(sharedText("tinyshakespeare.txt", 30_000).slice(20_000), {
    bos: true,
  });
  const job = { rank: 4, alpha: 8, lr: 1e-2, batch: 4, seq_len: 32, steps: 30, seed: 3 };
  const k = await Kernels.load({ threads: 1 });
  const model = new LlamaModel(k, stories);
  const stack = await startStack();
  try {
    const results: Record<string, { losses: number[]; nll: number; bytesUp: number }> = {};
    for (const codec of ["f32", "bf16", "f16"] as const) {
      const d = await stack.device(codec);
      const jobId = await stack.job({
        ...job,
        codec: { activations: codec, gradients: codec },
        devices: [d.id],
      });
      const r = await runDevice({
        coordinatorUrl: stack.url,
        token: d.token,
        text,
        jobId,
      });
      const lora = loraFromAdapter(k, stories.config, r.adapter);
      const nll = await nllOfIds(model, heldOut, 32, { hooks: lora });
      lora.free();
      results[codec] = { losses: r.losses, nll: nll.mean_nll, bytesUp: r.bytesUp };
    }
    const f32 = results.f32;
    for (const codec of ["bf16", "f16"]) {
      const c = results[codec];
      assertClose(c.losses, f32.losses, { atol: 0, rtol: 0.02, msg: `${codec} losses` });
      assert(
        Math.abs(c.nll - f32.nll) / f32.nll < 0.01,
        `${codec} held-out NLL ${c.nll} vs f32 ${f32.nll}`,
      );
      assert(c.bytesUp < 0.6 * f32.bytesUp, `${codec} sends about half the bytes`);
    }
  } finally {
    await stack.close();
    model.free();
    k.close();
  }
});
