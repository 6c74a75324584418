/**
 * The coordinator's control plane: a Hono app built from its dependencies (store, executor,
 * clock, config, log, metrics), so tests build it in-process and call `app.request()`. It
 * imports nothing platform-specific; serve.ts puts it on Deno.serve with a Deno KV store.
 *
 * Routes (JSON, versioned under /v1; errors are `{error: {kind, message, fields?}}`):
 *   GET  /healthz                     no auth
 *   GET  /metrics                     no auth, Prometheus text format
 *   POST /v1/enrollment-tokens        admin → {token, uses, expires_at}
 *   POST /v1/devices                  admin or enrollment token (or none with open
 *                                     registration) → {device_id, token, tier, rho, micro_batch}
 *   GET  /v1/devices                  admin
 *   GET  /v1/devices/me               device
 *   GET  /v1/devices/me/jobs          device: the jobs it is enrolled in
 *   GET  /v1/devices/:id              admin, or that device
 *   PATCH /v1/devices/:id             admin: tier override, status, name
 *   POST /v1/jobs                     admin
 *   GET  /v1/jobs                     admin
 *   GET  /v1/jobs/:id                 admin, or a device enrolled in it
 *   POST /v1/jobs/:id/cancel          admin
 *   GET  /v1/jobs/:id/session         enrolled device → handed to the executor
 *
 * Status codes: 401 missing or unknown credential, 403 valid credential without the right
 * (other device, not enrolled, device disabled, device token on an admin route), 413 body over
 * the limit, 429 rate limited (with Retry-After), 400 invalid JSON or schema (field-level
 * messages). A refused request changes nothing in the store.
 */
import { type Context, Hono } from "hono";
import { routePath } from "hono/route";
import type { z } from "zod";
import { bearerToken, hashToken, newId, newToken, timingSafeEqual } from "./auth.ts";
import { type Clock, type Executor, type Logger, silentLogger, systemClock } from "./deps.ts";
import {
  type CoordinatorMetrics,
  createCoordinatorMetrics,
  PROMETHEUS_CONTENT_TYPE,
} from "./metrics.ts";
import { DEFAULT_RATE_LIMIT, type RateLimitConfig, TokenBuckets } from "./ratelimit.ts";
import {
  createEnrollmentSchema,
  DEFAULT_JOB_LIMITS,
  describeErrors,
  type FieldErrors,
  fieldErrors,
  type JobLimits,
  jobSpecSchema,
  patchDeviceSchema,
  registerDeviceSchema,
} from "./schemas.ts";
import {
  type DeviceRecord,
  type EnrollmentRecord,
  enrollmentUsable,
  FINAL_JOB_STATUSES,
  type JobRecord,
  type Store,
} from "./store.ts";
import {
  assignTier,
  DEFAULT_TIERS,
  type Tier,
  type TierBudget,
  tierBudget,
  type TiersConfig,
  validateTiersConfig,
} from "./tiers.ts";

export interface CoordinatorConfig {
  /**
   * Let devices register with no credential. For loopback demos and tests only: serve()
   * refuses it on a non-loopback address. Otherwise registration needs the admin token or an
   * enrollment token (POST /v1/enrollment-tokens).
   */
  openRegistration: boolean;
  /** Largest control-plane request body. */
  maxBodyBytes: number;
  /** Applied per client address on every /v1 request and again per credential once known. */
  rateLimit: RateLimitConfig;
  limits: JobLimits;
  tiers: TiersConfig;
}

export const DEFAULT_CONFIG: CoordinatorConfig = {
  openRegistration: false,
  maxBodyBytes: 64 * 1024,
  rateLimit: DEFAULT_RATE_LIMIT,
  limits: DEFAULT_JOB_LIMITS,
  tiers: DEFAULT_TIERS,
};

export interface AppDeps {
  store: Store;
  /** The step stream; null while none is wired in (session requests then get 503). */
  executor: Executor | null;
  clock?: Clock;
  config?: Partial<CoordinatorConfig>;
  log?: Logger;
  metrics?: CoordinatorMetrics;
}

/** Per-request platform values: serve.ts passes the peer address, tests may too. */
export interface Bindings {
  remoteAddr?: { hostname: string };
}

type AppEnv = { Bindings: Bindings; Variables: { device?: DeviceRecord } };
type Ctx = Context<AppEnv>;

/** lastSeenAt is rewritten at most this often per device (a store write per request is waste). */
const LAST_SEEN_RESOLUTION_MS = 5_000;

export type ApiErrorKind =
  | "invalid_json"
  | "invalid_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "body_too_large"
  | "rate_limited"
  | "unavailable"
  | "internal";

const STATUS: Record<ApiErrorKind, number> = {
  invalid_json: 400,
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  body_too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
};

/** A refusal with its status, thrown by handlers and turned into the JSON error body. */
export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly kind: ApiErrorKind,
    message: string,
    readonly fields?: FieldErrors,
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = "ApiError";
    this.status = STATUS[kind];
  }
}

/** The tier a device works at now: the operator's override, else the policy's answer. */
export function deviceTier(
  device: DeviceRecord,
  tiers: TiersConfig,
): TierBudget & { tier: Tier; source: "operator" | "policy"; reason: string } {
  if (device.tierOverride !== null) {
    return {
      tier: device.tierOverride,
      ...tierBudget(device.tierOverride, tiers),
      source: "operator",
      reason: "set by the operator",
    };
  }
  return {
    ...assignTier(device.capability, device.measured ?? undefined, tiers),
    source: "policy",
  };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function deviceView(d: DeviceRecord, tiers: TiersConfig) {
  const t = deviceTier(d, tiers);
  return {
    id: d.id,
    name: d.name,
    status: d.status,
    tier: t.tier,
    tier_source: t.source,
    tier_reason: t.reason,
    rho: t.rho,
    micro_batch: t.microBatch,
    capability: {
      gflops: d.capability.gflops,
      threads: d.capability.threads,
      memory_mb: d.capability.memoryMb,
    },
    measured: d.measured === null
      ? null
      : { rtt_ms: d.measured.rttMs, bandwidth_mbps: d.measured.bandwidthMbps },
    created_at: iso(d.createdAt),
    last_seen_at: iso(d.lastSeenAt),
  };
}

/** A job as JSON; devices see their own jobs without the other devices' ids. */
function jobView(j: JobRecord, forDevice = false) {
  const { devices, ...spec } = j.spec;
  return {
    id: j.id,
    status: j.status,
    status_reason: j.statusReason,
    created_at: iso(j.createdAt),
    updated_at: iso(j.updatedAt),
    ...spec,
    ...(forDevice ? {} : { devices, selection: selectionView(j) }),
  };
}

/** Per device: the modules it trains now and every kill/revive event (module selection). */
function selectionView(j: JobRecord) {
  const out: Record<string, unknown> = {};
  for (const [device, s] of Object.entries(j.selection ?? {})) {
    out[device] = {
      step: s.step,
      tier: s.tier,
      budget: s.budget,
      active_modules: s.active.length,
      active: s.active,
      probing: s.probing,
      events: s.events,
      events_dropped: s.eventsDropped,
    };
  }
  return out;
}

const byCreation = <T extends { createdAt: number; id: string }>(a: T, b: T) =>
  a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function errorResponse(e: ApiError): Response {
  const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
  if (e.retryAfterS !== undefined) headers["retry-after"] = String(e.retryAfterS);
  if (e.kind === "unauthorized") headers["www-authenticate"] = 'Bearer realm="dlora"';
  const body = {
    error: { kind: e.kind, message: e.message, ...(e.fields ? { fields: e.fields } : {}) },
  };
  return new Response(JSON.stringify(body), { status: e.status, headers });
}

type Principal =
  | { kind: "admin" }
  | { kind: "device"; device: DeviceRecord }
  | { kind: "enrollment"; tokenHash: string; enrollment: EnrollmentRecord }
  | { kind: "unknown" };

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { store, executor } = deps;
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? silentLogger;
  const metrics = deps.metrics ?? createCoordinatorMetrics();
  const config: CoordinatorConfig = { ...DEFAULT_CONFIG, ...deps.config };
  validateTiersConfig(config.tiers);
  const buckets = new TokenBuckets(config.rateLimit, () => clock.now());
  const jobSchema = jobSpecSchema(config.limits);
  const app = new Hono<AppEnv>();

  // ---- request plumbing -------------------------------------------------------------------

  function rateLimit(key: string, who: string): void {
    const r = buckets.take(key);
    if (!r.ok) {
      throw new ApiError(
        "rate_limited",
        `too many requests from ${who}: retry in ${r.retryAfterS} s ` +
          `(limit ${config.rateLimit.perSecond}/s, burst ${config.rateLimit.burst})`,
        undefined,
        r.retryAfterS,
      );
    }
  }

  async function readJson<S extends z.ZodType>(
    c: Ctx,
    schema: S,
    what: string,
  ): Promise<z.output<S>> {
    const limit = config.maxBodyBytes;
    const declared = c.req.header("content-length");
    if (declared !== undefined && Number(declared) > limit) {
      throw new ApiError(
        "body_too_large",
        `request body too large: ${declared} bytes > ${limit} byte limit`,
      );
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    const body = c.req.raw.body;
    if (body !== null) {
      const reader = body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (total > limit) {
          await reader.cancel();
          throw new ApiError(
            "body_too_large",
            `request body too large: more than ${limit} bytes (the limit)`,
          );
        }
        chunks.push(value);
      }
    }
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.byteLength;
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new ApiError("invalid_json", "request body is not valid UTF-8");
    }
    let value: unknown = {};
    if (text.trim() !== "") {
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new ApiError(
          "invalid_json",
          `request body is not valid JSON: ${(e as Error).message}`,
        );
      }
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const fields = fieldErrors(parsed.error);
      throw new ApiError("invalid_request", `invalid ${what}: ${describeErrors(fields)}`, fields);
    }
    return parsed.data;
  }

  /** Who holds the bearer token; 401 when no token is given at all. */
  async function identify(c: Ctx, withEnrollment = false): Promise<Principal> {
    const header = c.req.header("authorization");
    if (header === undefined || header.trim() === "") {
      throw new ApiError("unauthorized", "missing credentials: send Authorization: Bearer <token>");
    }
    const token = bearerToken(header);
    if (token === null) {
      throw new ApiError("unauthorized", "the Authorization header is not a Bearer token");
    }
    const hash = await hashToken(token);
    const admin = await store.getAdminTokenHash();
    if (admin !== null && timingSafeEqual(hash, admin)) return { kind: "admin" };
    const device = await store.findDeviceByTokenHash(hash);
    if (device !== null && timingSafeEqual(hash, device.tokenHash)) {
      return { kind: "device", device };
    }
    if (withEnrollment) {
      const enrollment = await store.getEnrollment(hash);
      if (enrollment !== null) return { kind: "enrollment", tokenHash: hash, enrollment };
    }
    return { kind: "unknown" };
  }

  const invalidToken = () => new ApiError("unauthorized", "invalid or revoked token");

  function activeDevice(c: Ctx, device: DeviceRecord): DeviceRecord {
    if (device.status !== "active") {
      throw new ApiError("forbidden", `device ${device.id} is disabled by the operator`);
    }
    rateLimit(`device:${device.id}`, `device ${device.id}`);
    c.set("device", device);
    return device;
  }

  async function requireAdmin(c: Ctx): Promise<void> {
    const p = await identify(c);
    if (p.kind === "admin") {
      rateLimit("admin", "the admin token");
      return;
    }
    if (p.kind === "device") {
      throw new ApiError("forbidden", "this route needs the admin token; a device token was given");
    }
    throw invalidToken();
  }

  async function requireDevice(c: Ctx): Promise<DeviceRecord> {
    const p = await identify(c);
    if (p.kind === "device") return activeDevice(c, p.device);
    if (p.kind === "admin") {
      throw new ApiError("forbidden", "this route is for devices; send a device token");
    }
    throw invalidToken();
  }

  /** The admin (null) or an active device. */
  async function requireAdminOrDevice(c: Ctx): Promise<DeviceRecord | null> {
    const p = await identify(c);
    if (p.kind === "admin") {
      rateLimit("admin", "the admin token");
      return null;
    }
    if (p.kind === "device") return activeDevice(c, p.device);
    throw invalidToken();
  }

  async function findJob(id: string): Promise<JobRecord> {
    const job = await store.getJob(id);
    if (job === null) throw new ApiError("not_found", `no job ${id}`);
    return job;
  }

  function requireEnrolled(device: DeviceRecord, job: JobRecord): void {
    if (!job.spec.devices.includes(device.id)) {
      throw new ApiError("forbidden", `device ${device.id} is not enrolled in job ${job.id}`);
    }
  }

  // ---- middleware --------------------------------------------------------------------------

  app.onError((err, c) => {
    const e = err instanceof ApiError
      ? err
      : new ApiError("internal", "internal error; see the coordinator log");
    if (!(err instanceof ApiError)) {
      log.error("request failed", { method: c.req.method, path: c.req.path, error: String(err) });
    }
    metrics.errors.inc({ kind: e.kind });
    return errorResponse(e);
  });

  app.notFound((c) => {
    metrics.errors.inc({ kind: "not_found" });
    return errorResponse(new ApiError("not_found", `no route ${c.req.method} ${c.req.path}`));
  });

  app.use("*", async (c, next) => {
    await next();
    const route = routePath(c, -1);
    metrics.httpRequests.inc({
      method: c.req.method,
      route: route.endsWith("*") ? "(unmatched)" : route,
      status: String(c.res.status),
    });
  });

  app.use("/v1/*", async (c, next) => {
    const addr = c.env?.remoteAddr?.hostname ?? "unknown";
    rateLimit(`addr:${addr}`, addr);
    await next();
    // Only a request that succeeded counts as the device being seen: refusals change nothing.
    const device = c.get("device");
    const now = clock.now();
    if (
      device !== undefined && c.res.status < 400 &&
      (device.lastSeenAt === null || now - device.lastSeenAt >= LAST_SEEN_RESOLUTION_MS)
    ) {
      await store.touchDevice(device.id, now);
    }
  });

  // ---- routes ------------------------------------------------------------------------------

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.get("/metrics", () =>
    new Response(metrics.registry.render(), {
      headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
    }));

  app.post("/v1/enrollment-tokens", async (c) => {
    await requireAdmin(c);
    const body = await readJson(c, createEnrollmentSchema, "enrollment token");
    const token = newToken();
    const now = clock.now();
    const record = {
      tokenHash: await hashToken(token),
      usesLeft: body.uses,
      expiresAt: now + body.ttl_s * 1000,
      createdAt: now,
    };
    await store.putEnrollment(record);
    log.info("enrollment token created", { uses: body.uses, expires_at: iso(record.expiresAt) });
    return c.json({ token, uses: body.uses, expires_at: iso(record.expiresAt) }, 201);
  });

  app.post("/v1/devices", async (c) => {
    let enrollment: { tokenHash: string; now: number } | undefined;
    if (!config.openRegistration) {
      const p = await identify(c, true);
      if (p.kind === "device") {
        throw new ApiError(
          "forbidden",
          "a device token cannot register devices; use the admin token or an enrollment token",
        );
      }
      if (p.kind === "unknown") throw invalidToken();
      if (p.kind === "enrollment") {
        if (!enrollmentUsable(p.enrollment, clock.now())) {
          throw new ApiError("unauthorized", "enrollment token expired or used up");
        }
        rateLimit(`enrollment:${p.tokenHash}`, "this enrollment token");
        enrollment = { tokenHash: p.tokenHash, now: clock.now() };
      } else rateLimit("admin", "the admin token");
    }
    const body = await readJson(c, registerDeviceSchema, "device registration");
    const token = newToken();
    const now = clock.now();
    const device: DeviceRecord = {
      id: newId("dev"),
      name: body.name ?? null,
      tokenHash: await hashToken(token),
      capability: {
        gflops: body.capability.gflops,
        threads: body.capability.threads,
        memoryMb: body.capability.memory_mb,
      },
      measured: null,
      tierOverride: null,
      status: "active",
      createdAt: now,
      lastSeenAt: now,
    };
    if (!(await store.registerDevice(device, enrollment))) {
      throw new ApiError("unauthorized", "enrollment token expired or used up");
    }
    const t = deviceTier(device, config.tiers);
    log.info("device registered", { device_id: device.id, name: device.name, tier: t.tier });
    return c.json({
      device_id: device.id,
      token,
      tier: t.tier,
      tier_reason: t.reason,
      rho: t.rho,
      micro_batch: t.microBatch,
    }, 201);
  });

  app.get("/v1/devices", async (c) => {
    await requireAdmin(c);
    const devices = (await store.listDevices()).sort(byCreation);
    return c.json({ devices: devices.map((d) => deviceView(d, config.tiers)) });
  });

  app.get("/v1/devices/me", async (c) => {
    const device = await requireDevice(c);
    return c.json(deviceView(device, config.tiers));
  });

  app.get("/v1/devices/me/jobs", async (c) => {
    const device = await requireDevice(c);
    const jobs = (await store.listJobs()).filter((j) => j.spec.devices.includes(device.id));
    return c.json({ jobs: jobs.sort(byCreation).map((j) => jobView(j, true)) });
  });

  app.get("/v1/devices/:id", async (c) => {
    const caller = await requireAdminOrDevice(c);
    const id = c.req.param("id");
    if (caller !== null && caller.id !== id) {
      throw new ApiError("forbidden", `device ${caller.id} cannot see device ${id}`);
    }
    const device = await store.getDevice(id);
    if (device === null) throw new ApiError("not_found", `no device ${id}`);
    return c.json(deviceView(device, config.tiers));
  });

  app.patch("/v1/devices/:id", async (c) => {
    await requireAdmin(c);
    const id = c.req.param("id");
    const patch = await readJson(c, patchDeviceSchema, "device change");
    const device = await store.getDevice(id);
    if (device === null) throw new ApiError("not_found", `no device ${id}`);
    const next: DeviceRecord = {
      ...device,
      ...(patch.tier !== undefined ? { tierOverride: patch.tier } : {}),
      ...(patch.status !== undefined ? { status: patch.status } : {}),
      ...(patch.name !== undefined ? { name: patch.name } : {}),
    };
    await store.updateDevice(next);
    log.info("device changed by the operator", { device_id: id, ...patch });
    if (patch.tier !== undefined) {
      const t = deviceTier(next, config.tiers);
      executor?.deviceRetiered?.(id, { tier: t.tier, rho: t.rho, microBatch: t.microBatch });
    }
    return c.json(deviceView(next, config.tiers));
  });

  app.post("/v1/jobs", async (c) => {
    await requireAdmin(c);
    const spec = await readJson(c, jobSchema, "job");
    const fields: FieldErrors = {};
    for (const [i, id] of spec.devices.entries()) {
      const d = await store.getDevice(id);
      if (d === null) fields[`devices.${i}`] = [`no device ${id} is registered`];
      else if (d.status !== "active") fields[`devices.${i}`] = [`device ${id} is disabled`];
    }
    if (Object.keys(fields).length > 0) {
      throw new ApiError("invalid_request", `invalid job: ${describeErrors(fields)}`, fields);
    }
    const now = clock.now();
    const job: JobRecord = {
      id: newId("job"),
      spec,
      status: "pending",
      createdAt: now,
      updatedAt: now,
      statusReason: null,
    };
    await store.createJob(job);
    log.info("job created", { job_id: job.id, devices: spec.devices.length });
    return c.json(jobView(job), 201);
  });

  app.get("/v1/jobs", async (c) => {
    await requireAdmin(c);
    const jobs = (await store.listJobs()).sort(byCreation);
    return c.json({ jobs: jobs.map((j) => jobView(j)) });
  });

  app.get("/v1/jobs/:id", async (c) => {
    const device = await requireAdminOrDevice(c);
    const job = await findJob(c.req.param("id"));
    if (device !== null) requireEnrolled(device, job);
    return c.json(jobView(job, device !== null));
  });

  app.post("/v1/jobs/:id/cancel", async (c) => {
    await requireAdmin(c);
    const job = await findJob(c.req.param("id"));
    if (FINAL_JOB_STATUSES.includes(job.status)) {
      throw new ApiError("conflict", `job ${job.id} is already ${job.status}`);
    }
    const next: JobRecord = {
      ...job,
      status: "cancelled",
      statusReason: "cancelled by the operator",
      updatedAt: clock.now(),
    };
    if (!(await store.updateJob(next, job.status))) {
      const now = await store.getJob(job.id);
      throw new ApiError(
        "conflict",
        `job ${job.id} changed meanwhile (now ${now?.status ?? "gone"}); try again`,
      );
    }
    log.info("job cancelled", { job_id: job.id });
    await executor?.jobCancelled(job.id);
    return c.json(jobView(next));
  });

  app.get("/v1/jobs/:id/session", async (c) => {
    const device = await requireDevice(c);
    const job = await findJob(c.req.param("id"));
    requireEnrolled(device, job);
    if (FINAL_JOB_STATUSES.includes(job.status)) {
      throw new ApiError("conflict", `job ${job.id} is ${job.status}; no new sessions`);
    }
    if (executor === null) {
      throw new ApiError("unavailable", "this coordinator has no step-stream executor yet");
    }
    const t = deviceTier(device, config.tiers);
    return await executor.openSession({
      device,
      tier: { tier: t.tier, rho: t.rho, microBatch: t.microBatch },
      job,
      request: c.req.raw,
    });
  });

  return app;
}
