import { assert, assertClose, assertEquals, assertRejects } from "../tests/util.ts";
import { silentLogger } from "./deps.ts";
import { type RetierEvent, StepExecutor, stepWorkChanged } from "./executor.ts";
import { DEFAULT_TIERS } from "./tiers.ts";
import { serve } from "./serve.ts";
import { sharedText, startStack } from "./step_testing.ts";
import { parsePrometheus, TEST_ADMIN_TOKEN } from "./testing.ts";
import { runDevice } from "../runtime/device/device.ts";
import { RawWebSocket } from "../runtime/device/websocket.ts";
import {
  decodeHeader,
  encodeControlFrame,
  MESSAGE_TYPES,
  PROTOCOL_ERROR_CODES,
} from "../runtime/protocol/mod.ts";
import { OFF } from "../runtime/protocol/wire.ts";
import { edited, payloadAt } from "../runtime/protocol/testing.ts";
import { CLOSE_CODES, STREAM_ERROR_CODES } from "../runtime/protocol/stream.ts";

const TEXT = sharedText("tinyshakespeare.txt", 6_000);

function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  const family = parsePrometheus(text).get(name.replace(/_(count|sum|bucket)$/, "")) ??
    parsePrometheus(text).get(name);
  const s = family?.samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  return s?.value ?? 0;
}

Deno.test("malformed and unexpected frames get ERROR frames and change nothing: the run equals a clean one", async () => {
  const stack = await startStack();
  try {
    const spec = { rank: 4, batch: 2, seq_len: 16, steps: 3, seed: 5, lr: 1e-2 };
    const clean = await stack.device("clean");
    await stack.job({ ...spec, devices: [clean.id] });
    const reference = await runDevice({
      coordinatorUrl: stack.url,
      token: clean.token,
      text: TEXT,
    });
    assertEquals(reference.errors, []);

    const faulty = await stack.device("faulty");
    await stack.job({ ...spec, devices: [faulty.id] });
    const expected: number[] = [];
    let deltaY = 0, gradHl = 0, stepEnd = 0;
    const P = PROTOCOL_ERROR_CODES, S = STREAM_ERROR_CODES;
    const r = await runDevice({
      coordinatorUrl: stack.url,
      token: faulty.token,
      text: TEXT,
      crc: true, // so that a corrupted payload is caught as such
      beforeSend: (frame, send) => {
        const h = decodeHeader(frame);
        const inject = (bad: Uint8Array, code: number) => {
          send(bad);
          expected.push(code);
        };
        if (h.type === "HELLO") {
          inject(new TextEncoder().encode("not a frame at all"), P["bad-magic"]);
          inject(
            encodeControlFrame({ type: "STEP_END", session: 0, step: 0 }),
            S["unexpected-frame"],
          );
        }
        if (h.type === "DELTA_Y" && ++deltaY === 27) { // inside step 2's forward
          const corrupt = frame.slice();
          corrupt[corrupt.length - 1] ^= 0x40; // payload changed, CRC not resealed
          inject(corrupt, P["crc-mismatch"]);
          inject(
            edited(frame, (_, v) => v.setUint16(OFF.layer, h.layer + 1, true)),
            S["unexpected-frame"],
          );
          inject(
            edited(frame, (f) => (f[OFF.type] = MESSAGE_TYPES.GROUP_INPUT)),
            P["wrong-direction"],
          );
          inject(frame.slice(0, frame.length - 4), P.truncated);
          inject(
            edited(frame, (f, v) => v.setFloat32(payloadAt(f, 1).offset + 8, NaN, true)),
            P.nonfinite,
          );
          inject(
            edited(frame, (_, v) => v.setUint32(OFF.session, h.session + 100, true)),
            S["unexpected-frame"],
          );
        }
        if (h.type === "GRAD_HL" && ++gradHl === 2) {
          inject(
            edited(frame, (_, v) => v.setUint32(OFF.step, h.step + 1, true)),
            S["unexpected-frame"],
          );
        }
        if (h.type === "STEP_END" && ++stepEnd === 1) {
          inject(
            edited(frame, (_, v) => v.setUint32(OFF.step, 999, true)),
            S["unexpected-frame"],
          );
        }
      },
    });
    assertEquals(r.errors.map((e) => e.code), expected, "one ERROR per bad frame, in order");
    assert(r.errors.every((e) => e.message.length > 10), "errors say what was wrong");
    assertEquals(r.losses, reference.losses, "the refused frames changed nothing");
    assertEquals(
      [...r.adapter.modules.values()].map((m) => [...m.B]),
      [...reference.adapter.modules.values()].map((m) => [...m.B]),
    );
    await stack.executor.idle();
    const text = stack.metrics.registry.render();
    assertEquals(metric(text, "dlora_errors_total", { kind: "frame_refused" }), expected.length);
    assertEquals(metric(text, "dlora_steps_total"), 6);
  } finally {
    await stack.close();
  }
});

Deno.test("pipelined micro-batches: a HIDDEN_H0 for a micro-batch in flight and an early STEP_END are refused", async () => {
  const stack = await startStack();
  try {
    const spec = { rank: 4, batch: 3, seq_len: 16, steps: 2, seed: 9, lr: 1e-2 };
    const run = async (name: string, inject: boolean) => {
      const d = await stack.device(name);
      await stack.job({ ...spec, devices: [d.id] });
      let h0s = 0;
      return await runDevice({
        coordinatorUrl: stack.url,
        token: d.token,
        text: TEXT,
        microBatch: 1,
        pipeline: 2,
        beforeSend: (frame, send) => {
          const h = decodeHeader(frame);
          if (!inject || h.type !== "HIDDEN_H0" || ++h0s !== 2) return;
          // Micro-batch 0 of step 0 is in flight: its HIDDEN_H0 again, and a STEP_END now.
          send(edited(frame, (_, v) => v.setUint16(OFF.micro, 0, true)));
          send(encodeControlFrame({ type: "STEP_END", session: h.session, step: h.step }));
        },
      });
    };
    const clean = await run("clean-pipelined", false);
    assertEquals(clean.errors, []);
    const r = await run("faulty-pipelined", true);
    const S = STREAM_ERROR_CODES;
    assertEquals(r.errors.map((e) => e.code), [S["unexpected-frame"], S["unexpected-frame"]]);
    assert(
      /micro-batch 0 of step 0, which still runs/.test(r.errors[0].message),
      r.errors[0].message,
    );
    assert(/still run/.test(r.errors[1].message), r.errors[1].message);
    // Equal up to the order the overlapping micro-batches' gradients were summed in.
    assertClose(r.losses, clean.losses, {
      atol: 0,
      rtol: 1e-6,
      msg: "refused frames changed nothing",
    });
  } finally {
    await stack.close();
  }
});

Deno.test("a device that only sends garbage is closed with 1008 after maxRefused errors", async () => {
  const stack = await startStack({ maxRefused: 4 });
  try {
    const d = await stack.device();
    const job = await stack.job({ devices: [d.id] });
    const got: Uint8Array[] = [];
    let closed!: (v: [number, string]) => void;
    const done = new Promise<[number, string]>((r) => (closed = r));
    const ws = await RawWebSocket.connect(
      `${stack.url.replace("http", "ws")}/v1/jobs/${job}/session`,
      { onMessage: (m) => got.push(m), onClose: (code, reason) => closed([code, reason]) },
      { headers: { authorization: `Bearer ${d.token}` } },
    );
    for (let i = 0; i < 4; i++) ws.send(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    const [code, reason] = await done;
    assertEquals(code, CLOSE_CODES.policy);
    assert(/refused frames in a row/.test(reason), reason);
    const codes = got.map((f) => new DataView(f.buffer, 32).getUint16(0, true));
    assertEquals(codes, [1, 1, 1, 1, STREAM_ERROR_CODES["too-many-errors"]]);
  } finally {
    await stack.close();
  }
});

Deno.test("sessions need an enrolled, active device's token: 401, 403, 409, 426", async () => {
  const stack = await startStack();
  try {
    const a = await stack.device("a"), b = await stack.device("b");
    const job = await stack.job({ devices: [a.id] });
    const url = `${stack.url.replace("http", "ws")}/v1/jobs/${job}/session`;
    const handlers = { onMessage() {}, onClose() {} };
    const attempt = (token?: string) =>
      RawWebSocket.connect(url, handlers, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
    await assertRejects(() => attempt(), /HTTP 401: missing credentials/);
    await assertRejects(() => attempt("not-a-real-token"), /HTTP 401: invalid or revoked token/);
    await assertRejects(() => attempt(b.token), /HTTP 403: .* is not enrolled in job/);
    await assertRejects(() => attempt(TEST_ADMIN_TOKEN), /HTTP 403: this route is for devices/);
    // A plain request (no upgrade) is told what to do.
    const plain = await fetch(`${stack.url}/v1/jobs/${job}/session`, {
      headers: { authorization: `Bearer ${a.token}` },
    });
    assertEquals(plain.status, 426);
    assert(/WebSocket/.test((await plain.json()).error.message));
    // The built-in client path of the device runtime reports the refusal too.
    await assertRejects(
      () => runDevice({ coordinatorUrl: stack.url, token: b.token, text: TEXT, jobId: job }),
      /403/,
    );
    assertEquals(
      (await stack.call("PATCH", `/v1/devices/${a.id}`, { status: "disabled" })).status,
      200,
    );
    await assertRejects(() => attempt(a.token), /HTTP 403: device .* is disabled/);
    await stack.call("PATCH", `/v1/devices/${a.id}`, { status: "active" });
    await stack.call("POST", `/v1/jobs/${job}/cancel`);
    await assertRejects(() => attempt(a.token), /HTTP 409: job .* is cancelled/);
    assertEquals(stack.executor.sessions().length, 0, "no session was opened");
    const text = stack.metrics.registry.render();
    assertEquals(metric(text, "dlora_active_sessions"), 0);
  } finally {
    await stack.close();
  }
});

Deno.test("cancelling a job ends its sessions with ERROR job-cancelled (close 4001)", async () => {
  const stack = await startStack();
  try {
    const d = await stack.device();
    const job = await stack.job({ devices: [d.id], steps: 10_000 });
    let cancelled: Promise<unknown> | null = null;
    const err = await assertRejects(() =>
      runDevice({
        coordinatorUrl: stack.url,
        token: d.token,
        text: TEXT,
        onStep: (s) => {
          if (s.step === 2) cancelled ??= stack.call("POST", `/v1/jobs/${job}/cancel`);
        },
      })
    );
    await cancelled;
    // The close code (4001) and the ERROR frame before it (job-cancelled) both say why.
    assert(/job .* was cancelled/.test(err.message), err.message);
    assert(/4001/.test(err.message) || /job-cancelled/.test(err.message), err.message);
    assertEquals((await stack.store.getJob(job))!.status, "cancelled");
  } finally {
    await stack.close();
  }
});

Deno.test("8 concurrent sessions in the model worker train independently while /healthz answers", async () => {
  const stack = await startStack({ host: "worker" });
  try {
    const devices = await Promise.all(Array.from({ length: 8 }, (_, i) => stack.device(`d${i}`)));
    const jobs = await Promise.all(
      devices.map((d, i) =>
        stack.job({ devices: [d.id], steps: 3, seed: i, batch: 1 + (i % 3), seq_len: 8 + 4 * i })
      ),
    );
    let running = true, health = 0;
    const poll = (async () => {
      while (running) {
        const res = await fetch(`${stack.url}/healthz`);
        assertEquals(res.status, 200);
        await res.body?.cancel();
        health++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const concurrent = await Promise.all(
      devices.map((d, i) =>
        runDevice({ coordinatorUrl: stack.url, token: d.token, text: TEXT, jobId: jobs[i] })
      ),
    );
    running = false;
    await poll;
    assert(health > 3, `/healthz answered ${health} times during the runs`);
    assertEquals(new Set(concurrent.map((r) => r.session)).size, 8, "eight sessions");
    // Each session's result is what the same job gives alone: no state leaked between them.
    for (const [i, d] of devices.entries()) {
      const again = await stack.job({
        devices: [d.id],
        steps: 3,
        seed: i,
        batch: 1 + (i % 3),
        seq_len: 8 + 4 * i,
      });
      const alone = await runDevice({
        coordinatorUrl: stack.url,
        token: d.token,
        text: TEXT,
        jobId: again,
      });
      assertEquals(concurrent[i].losses, alone.losses, `device ${i}`);
    }
    await stack.executor.idle();
    const text = stack.metrics.registry.render();
    assertEquals(metric(text, "dlora_steps_total"), 8 * 3 * 2);
    assertEquals(metric(text, "dlora_active_sessions"), 0);
    const up = concurrent.reduce((s, r) => s + r.wire.byType.DELTA_Y!.bytesUp, 0) * 2;
    assertEquals(metric(text, "dlora_bytes_total", { direction: "up", type: "DELTA_Y" }), up);
    assertEquals(metric(text, "dlora_step_seconds_count"), 48);
    assertEquals((await stack.store.getJob(jobs[0]))!.status, "completed");
  } finally {
    await stack.close();
  }
});

Deno.test("serve() with a StepExecutor: shutdown ends open sessions (ERROR shutdown) and stops", async () => {
  const c = await serve({
    port: 0,
    kv: ":memory:",
    env: () => undefined,
    log: silentLogger,
    executor: (deps) => new StepExecutor({ ...deps, host: "worker" }),
  });
  let stopping: Promise<void> | null = null;
  try {
    const admin = c.admin.generated!;
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${c.url}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return await res.json();
    };
    const reg = await post("/v1/devices", {
      capability: { gflops: 20, threads: 1, memory_mb: 1024 },
    });
    await post("/v1/jobs", {
      base_model: "stories260K",
      rank: 4,
      batch: 2,
      seq_len: 16,
      steps: 100_000,
      devices: [reg.device_id],
    });
    const err = await assertRejects(() =>
      runDevice({
        coordinatorUrl: c.url,
        token: reg.token,
        text: TEXT,
        onStep: (s) => {
          if (s.step === 2) stopping ??= c.shutdown();
        },
      })
    );
    assert(/shutting down/.test(err.message), err.message);
    await stopping;
    await c.finished;
  } finally {
    if (stopping === null) await c.shutdown();
  }
});

Deno.test("a base model the coordinator cannot load ends the session with model-unavailable", async () => {
  const stack = await startStack();
  try {
    const d = await stack.device();
    await stack.job({ devices: [d.id], base_model: "./no/such/model.bin" });
    const err = await assertRejects(() =>
      // The device has its own copy of the ends, so it gets as far as the session.
      runDevice({ coordinatorUrl: stack.url, token: d.token, text: TEXT, model: "stories260K" })
    );
    assert(/model-unavailable|4003/.test(err.message), err.message);
    assert(/no\/such\/model\.bin/.test(err.message), err.message);
  } finally {
    await stack.close();
  }
});

Deno.test("the link is measured with PINGs at session start; a device outside its tier is re-tiered", async () => {
  const retiers: RetierEvent[] = [];
  // Tiers no link can meet: any measurement moves the device (B by capability) to C.
  const strict = {
    ...DEFAULT_TIERS,
    A: { ...DEFAULT_TIERS.A, maxRttMs: 0 },
    B: { ...DEFAULT_TIERS.B, maxRttMs: 0 },
  };
  const stack = await startStack({ tiers: strict, onRetier: (e) => retiers.push(e) });
  try {
    const d = await stack.device("measured");
    await stack.job({ rank: 4, batch: 2, seq_len: 16, steps: 4, devices: [d.id] });
    const before = await stack.call("GET", `/v1/devices/${d.id}`);
    assertEquals(before.json.measured, null);
    await runDevice({ coordinatorUrl: stack.url, token: d.token, text: TEXT });
    await stack.executor.idle();
    const after = await stack.call("GET", `/v1/devices/${d.id}`);
    const m = after.json.measured as Record<string, number>;
    assert(m !== null, "the device record has the link's figures");
    assert(m.rtt_ms > 0 && m.rtt_ms < 1000, `rtt ${m.rtt_ms} ms`);
    assert(m.bandwidth_mbps > 0, `bandwidth ${m.bandwidth_mbps} Mbit/s`);
    assertEquals(m.slowdown, 1);
    assertEquals(retiers.length, 1, JSON.stringify(retiers));
    const e = retiers[0];
    assertEquals([e.deviceId, e.from, e.to, e.rho, e.drift], [d.id, "B", "C", 0.125, null]);
    assert(/round trip .* ms > 0/.test(e.reason), e.reason);
    const text = await (await fetch(`${stack.url}/metrics`)).text();
    assertEquals(metric(text, "dlora_retiers_total", { from: "B", to: "C" }), 1);
  } finally {
    await stack.close();
  }
});

Deno.test("drift baseline restarts when Kill and Revive changes the device's modules, not otherwise", () => {
  const report = { session: 1, step: 9, micros: 1, tokens: 32, seconds: 0.1, computeSeconds: 0.05 };
  const decision = (events: { kind: "kill"; module: string; step: number }[]) => ({
    step: 10,
    active: ["0.q"],
    probing: [],
    events,
    budget: { rho: 0.25 },
    tier: "B",
    missedScores: false,
  });
  assertEquals(stepWorkChanged(report), false, "no decision");
  assertEquals(stepWorkChanged({ ...report, selection: decision([]) }), false, "nothing moved");
  assertEquals(
    stepWorkChanged({
      ...report,
      selection: decision([{ kind: "kill", module: "0.k", step: 10 }]),
    }),
    true,
  );
});
