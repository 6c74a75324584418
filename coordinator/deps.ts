/**
 * The coordinator app's dependencies besides its store: time, logging and the step-stream
 * executor. Interfaces only; serve.ts wires the real ones, tests pass doubles.
 */
import type { DeviceRecord, JobRecord } from "./store.ts";
import type { Tier, TierBudget } from "./tiers.ts";

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export type LogFields = Record<string, unknown>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** Drops everything (the default in tests). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** What the app hands the executor once a device has been allowed onto a job. */
export interface SessionOpen {
  /** The authenticated, active device enrolled in `job` (its token digest included). */
  device: DeviceRecord;
  /** The device's tier now (policy or operator override) and what it sets. */
  tier: TierBudget & { tier: Tier };
  /** A job that is pending or running. */
  job: JobRecord;
  /** The HTTP request that asked for the session (a WebSocket upgrade on the real server). */
  request: Request;
}

/**
 * The step stream (DLORA.md §2, §5): built in the next issue. The app authenticates and
 * authorizes; the executor takes the connection from there and answers with the response
 * (e.g. the 101 of a WebSocket upgrade), so the app core stays free of platform socket APIs.
 */
export interface Executor {
  openSession(session: SessionOpen): Response | Promise<Response>;
  /** The operator cancelled a job: close its sessions. */
  jobCancelled(jobId: string): void | Promise<void>;
  /** Ends every session and releases what the executor holds (called at shutdown). */
  close?(): Promise<void>;
  /** The operator re-tiered a device: its open sessions get the new budget at the next decision. */
  deviceRetiered?(deviceId: string, tier: TierBudget & { tier: Tier }): void;
}
