/**
 * The step-stream executor (DLORA.md §2, §5; Deno edge): the app authenticates a device and
 * hands over `GET /v1/jobs/:id/session`; this upgrades it to a WebSocket (binary frames) and
 * connects it to a session on the job's base model, run by a ModelHost (host.ts) — by default in
 * a worker per base model, so the frozen compute never blocks this thread, which only moves
 * frames, counts bytes and records metrics.
 *
 * Sessions end when the device closes the socket, the job is cancelled (ERROR job-cancelled,
 * close 4001), the executor closes (ERROR shutdown, 1001), or the session itself gives up
 * (close code and ERROR frame per session.ts).
 */
import type { Executor, Logger, SessionOpen } from "./deps.ts";
import { silentLogger } from "./deps.ts";
import { type CoordinatorMetrics, createCoordinatorMetrics } from "./metrics.ts";
import type { JobRecord, Store } from "./store.ts";
import type { ResolveOptions } from "../runtime/resolve.ts";
import { type Direction, type Limits, WireStats } from "../runtime/protocol/mod.ts";
import { messageTypeOf } from "../runtime/protocol/wire.ts";
import { CLOSE_CODES, type StreamCodecs } from "../runtime/protocol/stream.ts";
import {
  type HostSessionSpec,
  InThreadHost,
  type ModelHost,
  type SessionHandle,
  WorkerHost,
} from "./host.ts";
import type { StepReport } from "./session.ts";
import {
  afterDrift,
  DEFAULT_DRIFT,
  type Drift,
  type DriftConfig,
  DriftTracker,
  estimateLink,
  type PingSample,
} from "./link.ts";
import {
  DEFAULT_TIERS,
  deviceTier,
  type Tier,
  type TierBudget,
  type TiersConfig,
} from "./tiers.ts";
import { encodeControlFrame, HEADER_BYTES } from "../runtime/protocol/mod.ts";
import type { SelectionOutcome } from "./scheduler/driver.ts";

/** Kill/revive events kept per device and job (the oldest are dropped past this). */
const MAX_STORED_EVENTS = 500;

export interface ExecutorOptions {
  metrics?: CoordinatorMetrics;
  log?: Logger;
  /** Updates job status (pending → running → completed) when given. */
  store?: Store;
  /** Where sessions run: "worker" (default, a worker per base model), "in-thread", or a host. */
  host?: "worker" | "in-thread" | ModelHost;
  /** Kernel threads per base model (default 1). */
  threads?: number;
  /** Where base models are found. */
  resolve?: ResolveOptions;
  frameTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxRefused?: number;
  limits?: Partial<Limits>;
  /** CRC-32 on the tensor frames sent (default off: TENSOR_CRC_DEFAULT in stream.ts says why). */
  crc?: boolean;
  /**
   * Sees every frame: "up" as received from a device, "down" as sent. The bytes are only valid
   * during the call (received ones are then handed to the model worker); copy to keep them.
   */
  tap?: (frame: Uint8Array, direction: Direction, session: SessionInfo) => void;
  /** Called after every step a device completes. */
  onStep?: (report: StepReport & { jobId: string; deviceId: string }) => void;
  /** The tiers the devices' measurements are judged by (default DEFAULT_TIERS). */
  tiers?: TiersConfig;
  /**
   * Link measurement at session start and after a step-time drift (DLORA.md §4): small PINGs
   * for the round trip, PINGs with `largeBytes` of padding for the bandwidth. false: none.
   */
  linkProbe?: LinkProbeOptions | false;
  /** When a device's step time counts as drifted (then it is measured again and re-tiered). */
  drift?: DriftConfig;
  /** A device's tier changed after a measurement. */
  onRetier?: (event: RetierEvent) => void;
}

export interface LinkProbeOptions {
  smallPings: number;
  largePings: number;
  largeBytes: number;
  /** Longest wait for one PONG. */
  timeoutMs: number;
}

export const DEFAULT_LINK_PROBE: LinkProbeOptions = {
  smallPings: 4,
  largePings: 2,
  largeBytes: 256 * 1024,
  timeoutMs: 5_000,
};

/** A device measured again and found in another tier. */
export interface RetierEvent {
  deviceId: string;
  session: number;
  from: Tier;
  to: Tier;
  rho: number;
  reason: string;
  /** The step-time drift that caused the measurement (null: the first one, at session start). */
  drift: Drift | null;
}

/** One open session, as the operator sees it. */
export interface SessionInfo {
  session: number;
  jobId: string;
  deviceId: string;
  openedAt: number;
  steps: number;
  /** Bytes and frames per message type ("up" = device → coordinator). */
  stats: WireStats;
}

interface Live {
  info: SessionInfo;
  /** PINGs sent by the link probe and not yet answered: nonce → resolve(seconds). */
  pings: Map<number, (seconds: number) => void>;
  drift: DriftTracker;
  /** The tier the session runs at now. */
  tier: Tier;
  probing: boolean;
  /** Set once the session's HELLO went out: the device knows its session id from then on. */
  onHello: (() => void) | null;
  socket: WebSocket;
  handle: SessionHandle | null;
  socketClosed: boolean;
  sessionEnded: boolean;
  /** Resolves once the socket is closed and the session has handled its last frame. */
  done: Promise<void>;
  finish: () => void;
}

const utf8 = new TextEncoder();

/** A WebSocket close reason is at most 123 UTF-8 bytes. */
function closeReason(reason: string): string {
  let r = reason;
  while (utf8.encode(r).length > 123) r = r.slice(0, -2) + "…";
  return r;
}

/** Whether the step's module-selection decision changed the modules the device trains. */
export function stepWorkChanged(report: StepReport): boolean {
  return (report.selection?.events.length ?? 0) > 0;
}

function jsonError(status: number, kind: string, message: string): Response {
  return new Response(JSON.stringify({ error: { kind, message } }), {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

export class StepExecutor implements Executor {
  readonly metrics: CoordinatorMetrics;
  readonly #opts: ExecutorOptions;
  readonly #log: Logger;
  readonly #host: ModelHost;
  readonly #live = new Map<number, Live>();
  /** Per job: devices that finished the job's last step. */
  readonly #finishedDevices = new Map<string, Set<string>>();
  /** Per job: the store writes in flight, one after the other (no lost updates). */
  readonly #jobWrites = new Map<string, Promise<void>>();
  #nextId = 1;
  #closed = false;

  constructor(opts: ExecutorOptions = {}) {
    this.#opts = opts;
    this.metrics = opts.metrics ?? createCoordinatorMetrics();
    this.#log = opts.log ?? silentLogger;
    const host = opts.host ?? "worker";
    const hostOpts = { threads: opts.threads, resolve: opts.resolve };
    this.#host = host === "worker"
      ? new WorkerHost(hostOpts)
      : host === "in-thread"
      ? new InThreadHost(hostOpts)
      : host;
  }

  /** Sessions open now (and those still finishing their last frames). */
  sessions(): SessionInfo[] {
    return [...this.#live.values()].map((l) => l.info);
  }

  /**
   * The Kill-and-Revive scheduler's seam: sets a session's active modules (keys "3.q"), from its
   * next micro-batch on.
   */
  setActiveModules(session: number, keys: readonly string[]): void {
    const live = this.#live.get(session);
    if (live?.handle == null) throw new Error(`setActiveModules: no open session ${session}`);
    live.handle.setActiveModules(keys);
  }

  /** The operator re-tiered a device: its open sessions' budgets change at the next decision. */
  deviceRetiered(deviceId: string, tier: TierBudget & { tier: Tier }): void {
    for (const l of this.#live.values()) {
      if (l.info.deviceId !== deviceId) continue;
      l.tier = tier.tier;
      l.handle?.setTier(tier.tier, tier.rho);
    }
  }

  openSession(open: SessionOpen): Response {
    if (this.#closed) {
      return jsonError(503, "unavailable", "the coordinator is shutting down; retry later");
    }
    if (open.request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return jsonError(
        426,
        "upgrade_required",
        `GET /v1/jobs/${open.job.id}/session is a WebSocket: connect with a WebSocket client ` +
          `(Upgrade: websocket) and the device's bearer token`,
      );
    }
    const { socket, response } = Deno.upgradeWebSocket(open.request);
    socket.binaryType = "arraybuffer";
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    const info: SessionInfo = {
      session: id,
      jobId: open.job.id,
      deviceId: open.device.id,
      openedAt: Date.now(),
      steps: 0,
      stats: new WireStats("coordinator"),
    };
    let finish!: () => void;
    const done = new Promise<void>((r) => (finish = r));
    const live: Live = {
      info,
      pings: new Map(),
      drift: new DriftTracker(this.#opts.drift ?? DEFAULT_DRIFT),
      tier: open.tier.tier,
      probing: false,
      onHello: () => void this.#measureLink(live, open.device.id, null),
      socket,
      handle: null,
      socketClosed: false,
      sessionEnded: false,
      done,
      finish,
    };
    this.#live.set(id, live);
    const maybeDone = () => {
      if (!live.socketClosed || (live.handle !== null && !live.sessionEnded)) return;
      if (!this.#live.delete(id)) return;
      this.#log.info("session closed", { session: id, steps: info.steps });
      live.finish();
    };
    socket.onopen = () => {
      if (this.#closed) {
        socket.close(CLOSE_CODES.goingAway, "the coordinator is shutting down");
        return;
      }
      this.metrics.activeSessions.inc();
      this.#log.info("session opened", {
        session: id,
        job_id: open.job.id,
        device_id: open.device.id,
        tier: open.tier.tier,
      });
      void this.#markRunning(open.job);
      live.handle = this.#host.open(this.#spec(id, open), {
        send: (frame) => this.#sendDown(live, frame),
        step: (report) => {
          this.#stepDone(live, open.job, report);
          if (stepWorkChanged(report)) {
            // Kill and Revive changed what the device computes: its step time moves for that
            // reason, not because the device or the link did; start a new baseline.
            live.drift.reset();
            return;
          }
          const drift = live.drift.observe(report.seconds - report.computeSeconds);
          if (drift !== null) void this.#measureLink(live, open.device.id, drift);
        },
        refused: (code, message) => {
          this.metrics.errors.inc({ kind: "frame_refused" });
          this.#log.warn("frame refused", { session: id, code, message });
        },
        log: (message) => this.#log.warn("session", { session: id, message }),
        end: (code, reason) => {
          live.sessionEnded = true;
          this.metrics.activeSessions.dec();
          if (code !== CLOSE_CODES.normal && code !== CLOSE_CODES.goingAway) {
            this.metrics.errors.inc({ kind: "session_failed" });
            this.#log.warn("session ended", { session: id, code, reason });
          }
          if (socket.readyState === WebSocket.OPEN) socket.close(code, closeReason(reason));
          maybeDone();
        },
      });
    };
    socket.onmessage = (e: MessageEvent) => {
      const bytes = e.data instanceof ArrayBuffer
        ? new Uint8Array(e.data)
        : utf8.encode(String(e.data)); // a text message is no frame: it gets "bad-magic"
      info.stats.received(bytes);
      const type = bytes.length > 5 ? messageTypeOf(bytes[5]) ?? "INVALID" : "INVALID";
      this.metrics.bytes.inc({ direction: "up", type }, bytes.length);
      this.#opts.tap?.(bytes, "up", info);
      if (type === "PONG" && bytes.length >= HEADER_BYTES + 4) {
        const nonce = new DataView(bytes.buffer, bytes.byteOffset).getUint32(HEADER_BYTES, true);
        live.pings.get(nonce)?.(performance.now());
      }
      live.handle?.deliver(bytes);
    };
    socket.onclose = () => {
      if (live.socketClosed) return;
      live.socketClosed = true;
      // The session still handles what arrived before the close (a last STEP_END), then ends.
      live.handle?.close(CLOSE_CODES.normal, "the device closed the connection");
      maybeDone();
    };
    socket.onerror = (e) => {
      this.#log.warn("session socket error", {
        session: id,
        error: (e as ErrorEvent).message ?? "unknown",
      });
    };
    return response;
  }

  /** Resolves once every session open now has ended and its socket is closed. */
  async idle(): Promise<void> {
    await Promise.all([...this.#live.values()].map((l) => l.done));
  }

  jobCancelled(jobId: string): void {
    for (const l of this.#live.values()) {
      if (l.info.jobId === jobId) {
        l.handle?.close(CLOSE_CODES.jobCancelled, `job ${jobId} was cancelled`, "job-cancelled");
      }
    }
  }

  /** Ends every session (ERROR shutdown, close 1001) and stops the model workers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#host.close();
    const closing: Promise<void>[] = [];
    for (const l of this.#live.values()) {
      if (l.socket.readyState === WebSocket.CLOSED) continue;
      closing.push(
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 2_000);
          l.socket.addEventListener("close", () => {
            clearTimeout(timer);
            resolve();
          });
        }),
      );
      if (l.socket.readyState === WebSocket.OPEN) {
        l.socket.close(CLOSE_CODES.goingAway, "the coordinator is shutting down");
      }
    }
    await Promise.all(closing);
    for (const l of this.#live.values()) l.finish();
    this.#live.clear();
  }

  // -------------------------------------------------------------------------------------------

  #spec(id: number, open: SessionOpen): HostSessionSpec {
    const job = open.job.spec;
    return {
      session: id,
      jobId: open.job.id,
      deviceId: open.device.id,
      baseModel: job.base_model,
      targets: job.targets,
      codecs: job.codec as StreamCodecs,
      maxBatch: job.batch,
      maxSeqLen: job.seq_len,
      frameTimeoutMs: this.#opts.frameTimeoutMs,
      idleTimeoutMs: this.#opts.idleTimeoutMs,
      maxRefused: this.#opts.maxRefused,
      limits: this.#opts.limits,
      crc: this.#opts.crc,
      // Policy "all" runs no selection at all: the stream is exactly as without Kill and Revive.
      ...(job.kr.policy !== "all"
        ? {
          selection: {
            kr: job.kr,
            totalSteps: job.steps,
            // The device's data never reaches the coordinator, so "one pass" is unknown here:
            // without a period the default's cap (KR_DEFAULTS.periodFraction of the run) holds.
            stepsPerPass: Infinity,
            seed: job.seed,
            tier: open.tier.tier,
            tierRho: open.tier.rho,
            rank: job.rank,
          },
        }
        : {}),
    };
  }

  #sendDown(live: Live, frame: Uint8Array): void {
    if (live.socket.readyState !== WebSocket.OPEN) return;
    live.info.stats.sent(frame);
    const type = messageTypeOf(frame[5]) ?? "INVALID";
    this.metrics.bytes.inc({ direction: "down", type }, frame.length);
    this.#opts.tap?.(frame, "down", live.info);
    live.socket.send(frame);
    if (type === "HELLO" && live.onHello !== null) {
      const measure = live.onHello;
      live.onHello = null;
      measure();
    }
  }

  /**
   * Measures the link with PINGs (the device answers them whenever it waits for a frame), stores
   * the figures on the device record, and re-tiers it when they move it to another tier.
   * Failures are logged, never fatal: the session goes on at its tier.
   */
  async #measureLink(live: Live, deviceId: string, drift: Drift | null): Promise<void> {
    const probe = this.#opts.linkProbe === false
      ? null
      : { ...DEFAULT_LINK_PROBE, ...this.#opts.linkProbe };
    const store = this.#opts.store;
    if (probe === null || store === undefined || live.probing) return;
    live.probing = true;
    try {
      const samples: PingSample[] = [];
      const sizes = [
        ...Array(probe.smallPings).fill(0),
        ...Array(probe.largePings).fill(probe.largeBytes),
      ];
      for (const bytes of sizes) {
        const seconds = await this.#ping(live, bytes, probe.timeoutMs);
        if (seconds === null) return;
        samples.push({ paddingBytes: bytes, seconds });
      }
      const link = estimateLink(samples, probe.largeBytes);
      if (link === null) return;
      const device = await store.getDevice(deviceId);
      if (device === null) return;
      const measured = afterDrift(device.measured, link, drift);
      await store.updateDevice({ ...device, measured });
      const tiers = this.#opts.tiers ?? DEFAULT_TIERS;
      const t = deviceTier({ ...device, measured }, tiers);
      this.#log.info("link measured", {
        session: live.info.session,
        device_id: deviceId,
        rtt_ms: measured.rttMs,
        bandwidth_mbps: measured.bandwidthMbps,
        slowdown: measured.slowdown ?? 1,
        tier: t.tier,
      });
      if (t.tier !== live.tier) {
        const event: RetierEvent = {
          deviceId,
          session: live.info.session,
          from: live.tier,
          to: t.tier,
          rho: t.rho,
          reason: t.reason,
          drift,
        };
        live.tier = t.tier;
        // Its budget changes at the session's next decision (Kill and Revive, DLORA.md §3–4).
        live.handle?.setTier(t.tier, t.rho);
        this.metrics.retiers.inc({ from: event.from, to: event.to });
        this.#log.info("device re-tiered", { ...event, drift: drift?.ratio ?? null });
        this.#opts.onRetier?.(event);
      }
    } catch (e) {
      this.#log.warn("link not measured", { session: live.info.session, error: String(e) });
    } finally {
      live.probing = false;
    }
  }

  /** One PING with `bytes` of padding: seconds until its PONG, or null (timeout, closed). */
  #ping(live: Live, bytes: number, timeoutMs: number): Promise<number | null> {
    if (live.socket.readyState !== WebSocket.OPEN || live.sessionEnded) {
      return Promise.resolve(null);
    }
    let nonce = (Math.random() * 0xffffffff) >>> 0;
    while (live.pings.has(nonce)) nonce = (nonce + 1) >>> 0;
    const frame = encodeControlFrame({
      type: "PING",
      session: live.info.session,
      step: live.info.steps,
      nonce,
      padding: new Uint8Array(bytes),
    }, { crc: false });
    return new Promise((resolve) => {
      const t0 = performance.now();
      const timer = setTimeout(() => {
        live.pings.delete(nonce);
        resolve(null);
      }, timeoutMs);
      live.pings.set(nonce, (t) => {
        clearTimeout(timer);
        live.pings.delete(nonce);
        resolve((t - t0) / 1000);
      });
      this.#sendDown(live, frame);
    });
  }

  #stepDone(live: Live, job: JobRecord, report: StepReport): void {
    live.info.steps++;
    this.metrics.steps.inc();
    this.metrics.tokens.inc({}, report.tokens);
    this.metrics.stepSeconds.observe(report.seconds);
    const sel = report.selection;
    if (sel !== undefined) {
      for (const e of sel.events) this.metrics.krEvents.inc({ kind: e.kind });
      this.metrics.krActiveModules.set(sel.active.length, { device: live.info.deviceId });
      this.#log.info("module selection", {
        session: live.info.session,
        step: sel.step,
        active: sel.active.length,
        events: sel.events.length,
        ...(sel.missedScores ? { missed_scores: true } : {}),
      });
      void this.#recordSelection(job.id, live.info.deviceId, sel);
    }
    this.#opts.onStep?.({ ...report, jobId: job.id, deviceId: live.info.deviceId });
    if (report.step + 1 >= job.spec.steps) void this.#deviceFinished(job, live.info.deviceId);
  }

  /** Runs `write` after the job's earlier writes (each reads the job afresh). */
  #jobWrite(jobId: string, write: () => Promise<void>): Promise<void> {
    const next = (this.#jobWrites.get(jobId) ?? Promise.resolve()).then(write);
    const settled = next.catch(() => {});
    this.#jobWrites.set(jobId, settled);
    void settled.then(() => {
      if (this.#jobWrites.get(jobId) === settled) this.#jobWrites.delete(jobId);
    });
    return next;
  }

  /** Stores a device's latest decision and its events (GET /v1/jobs/:id shows them). */
  #recordSelection(jobId: string, deviceId: string, sel: SelectionOutcome): Promise<void> {
    const store = this.#opts.store;
    if (store === undefined) return Promise.resolve();
    return this.#jobWrite(jobId, async () => {
      try {
        const before = await store.getSelection(jobId, deviceId);
        let events = [...(before?.events ?? []), ...sel.events];
        let dropped = before?.eventsDropped ?? 0;
        if (events.length > MAX_STORED_EVENTS) {
          dropped += events.length - MAX_STORED_EVENTS;
          events = events.slice(-MAX_STORED_EVENTS);
        }
        await store.putSelection(jobId, deviceId, {
          step: sel.step,
          tier: sel.tier,
          budget: sel.budget,
          active: sel.active,
          probing: sel.probing,
          events,
          eventsDropped: dropped,
        });
      } catch (e) {
        this.#log.warn("module selection not stored", { job_id: jobId, error: String(e) });
      }
    });
  }

  #markRunning(job: JobRecord): Promise<void> {
    return this.#jobWrite(job.id, () => this.#markRunningNow(job));
  }

  async #markRunningNow(job: JobRecord): Promise<void> {
    const store = this.#opts.store;
    if (store === undefined) return;
    try {
      const now = await store.getJob(job.id);
      if (now?.status === "pending") {
        await store.updateJob({ ...now, status: "running", updatedAt: Date.now() }, "pending");
      }
    } catch (e) {
      this.#log.warn("job status not updated", { job_id: job.id, error: String(e) });
    }
  }

  #deviceFinished(job: JobRecord, deviceId: string): Promise<void> {
    return this.#jobWrite(job.id, () => this.#deviceFinishedNow(job, deviceId));
  }

  async #deviceFinishedNow(job: JobRecord, deviceId: string): Promise<void> {
    const done = this.#finishedDevices.get(job.id) ?? new Set<string>();
    done.add(deviceId);
    this.#finishedDevices.set(job.id, done);
    const store = this.#opts.store;
    if (store === undefined || !job.spec.devices.every((d) => done.has(d))) return;
    try {
      const now = await store.getJob(job.id);
      if (now?.status === "running") {
        await store.updateJob({
          ...now,
          status: "completed",
          statusReason: `every device finished step ${job.spec.steps}`,
          updatedAt: Date.now(),
        }, "running");
        this.#log.info("job completed", { job_id: job.id });
      }
    } catch (e) {
      this.#log.warn("job status not updated", { job_id: job.id, error: String(e) });
    }
  }
}
