import { assert, assertEquals } from "../tests/util.ts";
import { createApp } from "./app.ts";
import { hashToken } from "./auth.ts";
import { MemoryStore } from "./store.ts";
import {
  checkHistogram,
  parsePrometheus,
  snapshot,
  TEST_ADMIN_TOKEN,
  type TestCoordinator,
  testCoordinator,
} from "./testing.ts";

const LAPTOP = { gflops: 40, threads: 4, memory_mb: 8192 };
const PHONE = { gflops: 8, threads: 4, memory_mb: 1024 };

async function register(
  t: TestCoordinator,
  capability = LAPTOP,
  name?: string,
): Promise<{ id: string; token: string }> {
  t.clock.advance(1); // listings are in creation order
  const r = await t.call("POST", "/v1/devices", { body: { capability, name } });
  assertEquals(r.status, 201, JSON.stringify(r.json));
  return { id: r.json.device_id as string, token: r.json.token as string };
}

async function createJob(t: TestCoordinator, devices: string[], extra = {}): Promise<string> {
  t.clock.advance(1);
  const r = await t.call("POST", "/v1/jobs", {
    body: { base_model: "stories260K", devices, ...extra },
  });
  assertEquals(r.status, 201, JSON.stringify(r.json));
  return r.json.id as string;
}

function errorOf(r: { json: Record<string, unknown> }) {
  return r.json.error as { kind: string; message: string; fields?: Record<string, string[]> };
}

/** Runs `fn` and checks the store did not change. */
async function unchanged<T>(t: TestCoordinator, fn: () => T | Promise<T>): Promise<T> {
  const before = await snapshot(t.store);
  const out = await fn();
  assertEquals(await snapshot(t.store), before, "a refused request changed the store");
  return out;
}

Deno.test("app: /healthz and /metrics answer without credentials", async () => {
  const t = await testCoordinator();
  const h = await t.call("GET", "/healthz", { token: null });
  assertEquals([h.status, h.json], [200, { status: "ok" }]);
  const m = await t.app.request("/metrics");
  assertEquals(m.status, 200);
  assert(m.headers.get("content-type")!.startsWith("text/plain; version=0.0.4"));
  const fams = parsePrometheus(await m.text());
  checkHistogram(fams.get("dlora_step_seconds")!, "dlora_step_seconds");
});

Deno.test("app: registration returns a working device token stored only as its digest", async () => {
  const t = await testCoordinator();
  const r = await t.call("POST", "/v1/devices", {
    body: { name: "laptop-1", capability: LAPTOP },
  });
  assertEquals(r.status, 201);
  const { device_id, token, tier, rho, micro_batch } = r.json as Record<string, string | number>;
  assert(/^dev_[A-Za-z0-9_-]{16}$/.test(device_id as string), String(device_id));
  assert(/^[A-Za-z0-9_-]{43}$/.test(token as string), "256-bit base64url token");
  assertEquals([tier, rho, micro_batch], ["A", 0.5, 8]);

  const me = await t.call("GET", "/v1/devices/me", { token: token as string });
  assertEquals(me.status, 200);
  assertEquals([me.json.id, me.json.name, me.json.tier_source], [device_id, "laptop-1", "policy"]);
  assertEquals(me.json.capability, LAPTOP);

  const dump = await snapshot(t.store);
  assert(!dump.includes(token as string), "the token itself is never stored");
  assert(!dump.includes(TEST_ADMIN_TOKEN), "nor the admin token");
  assertEquals(
    (await t.store.getDevice(device_id as string))!.tokenHash,
    await hashToken(token as string),
  );

  t.clock.advance(1);
  const phone = await t.call("POST", "/v1/devices", { body: { capability: PHONE } });
  assertEquals([phone.json.tier, phone.json.rho, phone.json.micro_batch], ["B", 0.25, 4]);
  const list = await t.call("GET", "/v1/devices");
  const devices = list.json.devices as { id: string; tier: string }[];
  assertEquals(devices.map((d) => d.tier), ["A", "B"]);
});

Deno.test("app: registration needs the admin token or an enrollment token (unless open)", async () => {
  const t = await testCoordinator();
  const body = { capability: LAPTOP };
  await unchanged(t, async () => {
    const none = await t.call("POST", "/v1/devices", { token: null, body });
    assertEquals(none.status, 401);
    assertEquals(none.headers.get("www-authenticate"), 'Bearer realm="dlora"');
    assertEquals((await t.call("POST", "/v1/devices", { token: "nope", body })).status, 401);
  });

  const e = await t.call("POST", "/v1/enrollment-tokens", { body: { uses: 1, ttl_s: 600 } });
  assertEquals(e.status, 201);
  const enrollment = e.json.token as string;
  assertEquals(e.json.expires_at, new Date(t.clock.now() + 600_000).toISOString());
  // A bad body does not use up the enrollment token.
  const bad = await unchanged(
    t,
    () => t.call("POST", "/v1/devices", { token: enrollment, body: { capability: {} } }),
  );
  assertEquals(bad.status, 400);
  const ok = await t.call("POST", "/v1/devices", { token: enrollment, body });
  assertEquals(ok.status, 201);
  const again = await unchanged(
    t,
    () => t.call("POST", "/v1/devices", { token: enrollment, body }),
  );
  assertEquals(again.status, 401);
  assert(/expired or used up/.test(errorOf(again).message), errorOf(again).message);

  // A device token is a credential, but not one that may register devices.
  const asDevice = await unchanged(
    t,
    () => t.call("POST", "/v1/devices", { token: ok.json.token as string, body }),
  );
  assertEquals(asDevice.status, 403);

  const timed = await t.call("POST", "/v1/enrollment-tokens", { body: { uses: 5, ttl_s: 60 } });
  t.clock.advance(61_000);
  const late = await unchanged(
    t,
    () => t.call("POST", "/v1/devices", { token: timed.json.token as string, body }),
  );
  assertEquals(late.status, 401);

  const open = await testCoordinator({ openRegistration: true });
  assertEquals((await open.call("POST", "/v1/devices", { token: null, body })).status, 201);
});

Deno.test("app: auth matrix (401 missing/wrong, 403 valid but not allowed) changes nothing", async () => {
  const t = await testCoordinator();
  const a = await register(t);
  const b = await register(t, PHONE);
  const job = await createJob(t, [a.id]);
  const wrong = "x".repeat(43);
  const cases: [string, string, string | null, number, RegExp, unknown?][] = [
    ["GET", "/v1/devices", null, 401, /missing credentials/],
    ["GET", "/v1/devices", wrong, 401, /invalid or revoked token/],
    ["GET", "/v1/devices", b.token, 403, /needs the admin token/],
    ["GET", "/v1/jobs", b.token, 403, /needs the admin token/],
    ["POST", "/v1/jobs", b.token, 403, /needs the admin token/, {
      base_model: "m",
      devices: [b.id],
    }],
    ["POST", `/v1/jobs/${job}/cancel`, a.token, 403, /needs the admin token/],
    ["PATCH", `/v1/devices/${b.id}`, b.token, 403, /needs the admin token/, { tier: "A" }],
    ["POST", "/v1/enrollment-tokens", a.token, 403, /needs the admin token/],
    ["GET", "/v1/devices/me", null, 401, /missing credentials/],
    ["GET", "/v1/devices/me", wrong, 401, /invalid or revoked/],
    ["GET", "/v1/devices/me", TEST_ADMIN_TOKEN, 403, /for devices/],
    ["GET", `/v1/devices/${a.id}`, b.token, 403, /cannot see device/],
    ["GET", `/v1/jobs/${job}`, b.token, 403, /not enrolled in job/],
    ["GET", `/v1/jobs/${job}`, wrong, 401, /invalid or revoked/],
    ["GET", `/v1/jobs/${job}/session`, b.token, 403, /not enrolled in job/],
    ["GET", `/v1/jobs/${job}/session`, null, 401, /missing credentials/],
    ["GET", `/v1/jobs/${job}/session`, TEST_ADMIN_TOKEN, 403, /for devices/],
  ];
  for (const [method, path, token, status, message, body] of cases) {
    const r = await unchanged(t, () => t.call(method, path, { token, body }));
    assertEquals(r.status, status, `${method} ${path} with ${token?.slice(0, 6) ?? "no token"}`);
    assert(message.test(errorOf(r).message), `${method} ${path}: ${errorOf(r).message}`);
  }
  const malformed = await t.call("GET", "/v1/devices", {
    token: null,
    headers: { authorization: "Basic dXNlcjpwYXNz" },
  });
  assertEquals(malformed.status, 401);
  assert(/not a Bearer token/.test(errorOf(malformed).message));
  assertEquals(t.executor.sessions.length, 0, "no refused session reached the executor");
  // The allowed side of the same routes.
  assertEquals((await t.call("GET", `/v1/devices/${a.id}`, { token: a.token })).status, 200);
  assertEquals((await t.call("GET", `/v1/devices/${a.id}`)).status, 200);
  assertEquals((await t.call("GET", `/v1/jobs/${job}`, { token: a.token })).status, 200);
});

Deno.test("app: body over the limit → 413 (declared or streamed), nothing stored", async () => {
  const t = await testCoordinator({ maxBodyBytes: 1024 });
  const big = JSON.stringify({ base_model: "m".repeat(2000), devices: ["dev_aaaaaaaaaaaaaaaa"] });
  const declared = await unchanged(
    t,
    () => t.call("POST", "/v1/jobs", { body: "{}", headers: { "content-length": "5000" } }),
  );
  assertEquals(declared.status, 413);
  assert(/5000 bytes > 1024 byte limit/.test(errorOf(declared).message), errorOf(declared).message);
  const plain = await unchanged(t, () => t.call("POST", "/v1/jobs", { body: big }));
  assertEquals(plain.status, 413);
  // A chunked body with no length is cut off as soon as it passes the limit.
  const chunk = new TextEncoder().encode(big.slice(0, 500));
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      if (pulls > 100) controller.close();
      else controller.enqueue(chunk);
    },
  });
  const streamed = await unchanged(t, () =>
    t.app.request("/v1/jobs", {
      method: "POST",
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      body: stream,
      duplex: "half",
    } as RequestInit));
  assertEquals(streamed.status, 413);
  assert(pulls < 10, `stopped reading after ${pulls} chunks`);
  assertEquals(t.metrics.errors.value({ kind: "body_too_large" }), 3);
});

Deno.test("app: rate limit → 429 with Retry-After, per address and per credential", async () => {
  const t = await testCoordinator({ rateLimit: { burst: 3, perSecond: 1, maxKeys: 100 } });
  for (let i = 0; i < 3; i++) assertEquals((await t.call("GET", "/healthz")).status, 200);
  for (let i = 0; i < 3; i++) {
    assertEquals((await t.call("GET", "/v1/jobs", { addr: "198.51.100.7" })).status, 200);
  }
  const limited = await unchanged(
    t,
    () =>
      t.call("POST", "/v1/jobs", { addr: "198.51.100.7", body: { base_model: "m", devices: [] } }),
  );
  assertEquals(limited.status, 429);
  assertEquals(limited.headers.get("retry-after"), "1");
  assert(/too many requests from 198\.51\.100\.7: retry in 1 s/.test(errorOf(limited).message));
  // /healthz is not limited, and time refills the bucket.
  assertEquals((await t.call("GET", "/healthz", { addr: "198.51.100.7" })).status, 200);
  t.clock.advance(1000);
  assertEquals((await t.call("GET", "/v1/jobs", { addr: "198.51.100.7" })).status, 200);
  // The admin credential has its own bucket: spreading over addresses does not escape it.
  t.clock.advance(60_000);
  const statuses = [];
  for (let i = 0; i < 5; i++) {
    statuses.push((await t.call("GET", "/v1/jobs", { addr: `203.0.113.${i}` })).status);
  }
  assertEquals(statuses, [200, 200, 200, 429, 429]);
});

Deno.test("app: job validation gives field-level messages and stores nothing", async () => {
  const t = await testCoordinator();
  const a = await register(t);
  await unchanged(t, async () => {
    const r = await t.call("POST", "/v1/jobs", {
      body: {
        base_model: "stories260K",
        devices: [a.id],
        seq_len: 100_000,
        batch: 0,
        rank: 1.5,
        targets: ["q", "qkv"],
        codec: { activations: "f64" },
        seqlen: 5,
      },
    });
    assertEquals(r.status, 400);
    const e = errorOf(r);
    assertEquals(e.kind, "invalid_request");
    assertEquals(Object.keys(e.fields!).sort(), [
      "(body)",
      "batch",
      "codec.activations",
      "rank",
      "seq_len",
      "targets.1",
    ]);
    assert(/^invalid job: /.test(e.message), e.message);
    assert(
      /seq_len: must be ≤ 4096 \(this coordinator's seq_len limit\)/.test(e.message),
      e.message,
    );
    assert(/seqlen/.test(e.fields!["(body)"][0]), "unknown keys are named");

    const tokens = await t.call("POST", "/v1/jobs", {
      body: { base_model: "m", devices: [a.id], batch: 64, seq_len: 4096 },
    });
    assertEquals(tokens.status, 400);
    assert(/batch × seq_len = 262144 tokens per step > 65536/.test(errorOf(tokens).message));

    const unknown = await t.call("POST", "/v1/jobs", {
      body: { base_model: "m", devices: [a.id, "dev_AAAAAAAAAAAAAAAA", a.id] },
    });
    assertEquals(unknown.status, 400);
    assertEquals(Object.keys(errorOf(unknown).fields!), ["devices.2"], "listed twice");

    const missing = await t.call("POST", "/v1/jobs", {
      body: { base_model: "m", devices: ["dev_AAAAAAAAAAAAAAAA"] },
    });
    assertEquals(errorOf(missing).fields, {
      "devices.0": ["no device dev_AAAAAAAAAAAAAAAA is registered"],
    });

    const notJson = await t.call("POST", "/v1/jobs", { body: "{base_model:" });
    assertEquals([notJson.status, errorOf(notJson).kind], [400, "invalid_json"]);
    const noBody = await t.call("POST", "/v1/jobs", {});
    assertEquals(Object.keys(errorOf(noBody).fields!).sort(), ["base_model", "devices"]);
  });
  const custom = await testCoordinator({
    limits: {
      maxRank: 16,
      maxSteps: 10,
      maxBatch: 4,
      maxSeqLen: 64,
      maxTokensPerStep: 256,
      maxDevicesPerJob: 2,
    },
  });
  const r = await custom.call("POST", "/v1/jobs", {
    body: { base_model: "m", devices: ["dev_AAAAAAAAAAAAAAAA"], seq_len: 128, batch: 5 },
  });
  assertEquals(errorOf(r).fields, {
    batch: ["must be ≤ 4 (this coordinator's batch limit)"],
    seq_len: ["must be ≤ 64 (this coordinator's seq_len limit)"],
  });
});

Deno.test("app: job lifecycle: create, list, device view, session, cancel", async () => {
  const t = await testCoordinator();
  const a = await register(t);
  const b = await register(t, PHONE);
  const created = await t.call("POST", "/v1/jobs", {
    body: {
      name: "austen",
      base_model: "stories260K",
      devices: [a.id, b.id],
      targets: ["v", "q", "q"],
      rank: 4,
      steps: 50,
      codec: { gradients: "int8", topk: 0.1 },
      kr: { policy: "kr", period: 5 },
    },
  });
  assertEquals(created.status, 201);
  const job = created.json;
  assertEquals(job.status, "pending");
  assertEquals(job.targets, ["q", "v"], "targets deduplicated in canonical order");
  assertEquals([job.rank, job.alpha, job.lr, job.batch, job.seq_len], [4, 4, 0.001, 8, 256]);
  assertEquals(job.codec, { activations: "f32", gradients: "int8", topk: 0.1 });
  assertEquals(job.kr, {
    policy: "kr",
    period: 5,
    probe: null,
    revive_fraction: 0.1,
    mode: "topk",
    tau: null,
    export: "active",
    score: "effective",
    budget: null,
    budget_over: "count",
    lr_scale: 2,
    rank_scale: 1,
    warmup: 3, // KR_DEFAULTS: 5% of the 50 steps
  });
  const other = await createJob(t, [b.id]);

  const list = await t.call("GET", "/v1/jobs");
  assertEquals((list.json.jobs as { id: string }[]).map((j) => j.id), [job.id, other]);
  const mine = await t.call("GET", "/v1/devices/me/jobs", { token: a.token });
  const mineJobs = mine.json.jobs as Record<string, unknown>[];
  assertEquals(mineJobs.map((j) => j.id), [job.id]);
  assertEquals(mineJobs[0].devices, undefined, "devices do not see each other's ids");
  assertEquals((await t.call("GET", `/v1/jobs/${job.id}`)).json.devices, [a.id, b.id]);

  const session = await t.call("GET", `/v1/jobs/${job.id}/session`, { token: b.token });
  assertEquals(session.status, 200);
  assertEquals(t.executor.sessions.length, 1);
  const s = t.executor.sessions[0];
  assertEquals([s.device.id, s.job.id, s.tier.tier, s.tier.rho], [b.id, job.id, "B", 0.25]);

  const cancel = await t.call("POST", `/v1/jobs/${job.id}/cancel`);
  assertEquals([cancel.status, cancel.json.status], [200, "cancelled"]);
  assertEquals(cancel.json.status_reason, "cancelled by the operator");
  assertEquals(t.executor.cancelled, [job.id]);
  const twice = await unchanged(t, () => t.call("POST", `/v1/jobs/${job.id}/cancel`));
  assertEquals(twice.status, 409);
  assert(/already cancelled/.test(errorOf(twice).message));
  const late = await unchanged(
    t,
    () => t.call("GET", `/v1/jobs/${job.id}/session`, { token: a.token }),
  );
  assertEquals(late.status, 409);
  assertEquals((await t.call("GET", "/v1/jobs/job_nope")).status, 404);
  assertEquals((await t.call("POST", "/v1/jobs/job_nope/cancel")).status, 404);
});

Deno.test("app: the operator overrides tiers and disables devices", async () => {
  const t = await testCoordinator();
  const a = await register(t);
  const job = await createJob(t, [a.id]);
  const c = await t.call("PATCH", `/v1/devices/${a.id}`, { body: { tier: "C" } });
  assertEquals([c.status, c.json.tier, c.json.tier_source, c.json.rho, c.json.micro_batch], [
    200,
    "C",
    "operator",
    0.125,
    1,
  ]);
  await t.call("GET", `/v1/jobs/${job}/session`, { token: a.token });
  assertEquals(t.executor.sessions.at(-1)!.tier.tier, "C", "the executor gets the override");
  const back = await t.call("PATCH", `/v1/devices/${a.id}`, { body: { tier: null } });
  assertEquals([back.json.tier, back.json.tier_source], ["A", "policy"]);

  await unchanged(t, async () => {
    const bad = await t.call("PATCH", `/v1/devices/${a.id}`, { body: { tier: "D" } });
    assertEquals(bad.status, 400);
    assert(/^tier$/.test(Object.keys(errorOf(bad).fields!)[0]));
    const empty = await t.call("PATCH", `/v1/devices/${a.id}`, { body: {} });
    assert(/give at least one of tier, status, name/.test(errorOf(empty).message));
    assertEquals(
      (await t.call("PATCH", "/v1/devices/dev_AAAAAAAAAAAAAAAA", {
        body: { tier: "A" },
      })).status,
      404,
    );
  });

  await t.call("PATCH", `/v1/devices/${a.id}`, { body: { status: "disabled" } });
  const refused = await unchanged(t, () => t.call("GET", "/v1/devices/me", { token: a.token }));
  assertEquals(refused.status, 403);
  assert(/disabled by the operator/.test(errorOf(refused).message));
  const enroll = await t.call("POST", "/v1/jobs", { body: { base_model: "m", devices: [a.id] } });
  assertEquals(errorOf(enroll).fields, { "devices.0": [`device ${a.id} is disabled`] });
  await t.call("PATCH", `/v1/devices/${a.id}`, { body: { status: "active" } });
  assertEquals((await t.call("GET", "/v1/devices/me", { token: a.token })).status, 200);
});

Deno.test("app: last_seen moves only on a device's successful requests", async () => {
  const t = await testCoordinator();
  const a = await register(t);
  const b = await register(t);
  const seen = async () => (await t.store.getDevice(a.id))!.lastSeenAt;
  const registeredAt = await seen();
  t.clock.advance(60_000);
  await unchanged(t, () => t.call("GET", `/v1/devices/${b.id}`, { token: a.token }));
  assertEquals(await seen(), registeredAt);
  await t.call("GET", "/v1/devices/me/jobs", { token: a.token });
  assertEquals(await seen(), t.clock.now());
  const listed = (await t.call("GET", "/v1/devices")).json.devices as Record<string, unknown>[];
  assertEquals(listed[0].last_seen_at, new Date(t.clock.now()).toISOString());
});

Deno.test("app: metrics count requests by route and refusals by kind; unknown routes are 404", async () => {
  const t = await testCoordinator();
  const a = await register(t);
  await t.call("GET", `/v1/devices/${a.id}`);
  await t.call("GET", "/v1/devices", { token: null });
  await t.call("GET", "/v1/devices", { token: "wrong" });
  const nf = await t.call("GET", "/v1/nothing-here");
  assertEquals([nf.status, errorOf(nf).message], [404, "no route GET /v1/nothing-here"]);
  const fams = parsePrometheus(await (await t.app.request("/metrics")).text());
  const errors = fams.get("dlora_errors_total")!.samples;
  assertEquals(errors.find((s) => s.labels.kind === "unauthorized")?.value, 2);
  assertEquals(errors.find((s) => s.labels.kind === "not_found")?.value, 1);
  const http = fams.get("dlora_http_requests_total")!.samples;
  const byRoute = (route: string, status: string) =>
    http.find((s) => s.labels.route === route && s.labels.status === status)?.value;
  assertEquals(byRoute("/v1/devices/:id", "200"), 1);
  assertEquals(byRoute("/v1/devices", "401"), 2);
  assertEquals(byRoute("/v1/devices", "201"), 1);
  assertEquals(byRoute("(unmatched)", "404"), 1);
});

Deno.test("app: without an executor a session request is 503, not a pretend session", async () => {
  const store = new MemoryStore();
  const app = createApp({ store, executor: null, config: { openRegistration: true } });
  const reg = await app.request("/v1/devices", {
    method: "POST",
    body: JSON.stringify({ capability: LAPTOP }),
  });
  const { device_id, token } = await reg.json();
  const now = Date.now();
  await store.createJob({
    id: "job_x",
    spec: { devices: [device_id] } as never,
    status: "pending",
    createdAt: now,
    updatedAt: now,
    statusReason: null,
  });
  const r = await app.request("/v1/jobs/job_x/session", {
    headers: { authorization: `Bearer ${token}` },
  });
  assertEquals(r.status, 503);
  assert(/no step-stream executor/.test((await r.json()).error.message));
});
