/**
 * What the coordinator keeps across restarts: devices (with their token digests), jobs,
 * enrollment tokens and the admin token digest. `Store` is the interface the app depends on;
 * `MemoryStore` here is for tests and throwaway runs, `KvStore`
 * (store_kv.ts, Deno only) is the durable one. Records are plain JSON-able data and every call
 * hands out copies, so a caller can never change stored state by mutating what it got.
 */
import type { JobSpec } from "./schemas.ts";
import type { Capability, Measured, Tier } from "./tiers.ts";

export type DeviceStatus = "active" | "disabled";

export interface DeviceRecord {
  id: string;
  name: string | null;
  /** Hex SHA-256 of the device's bearer token; the token itself is never stored. */
  tokenHash: string;
  capability: Capability;
  /** Round-trip time and bandwidth once the step stream has measured them. */
  measured: Measured | null;
  /**
   * The operator's override of the tier policy, if any. The policy's own answer is not stored:
   * it is recomputed from capability and measurements under the current tiers config.
   */
  tierOverride: Tier | null;
  status: DeviceStatus;
  createdAt: number;
  lastSeenAt: number | null;
}

export type JobStatus = "pending" | "running" | "completed" | "failed" | "cancelled";
export const FINAL_JOB_STATUSES: readonly JobStatus[] = ["completed", "failed", "cancelled"];

export interface JobRecord {
  id: string;
  spec: JobSpec;
  status: JobStatus;
  createdAt: number;
  updatedAt: number;
  /** Why a job failed or was cancelled, for the operator. */
  statusReason: string | null;
  /** Module selection per device id (jobs with a kr policy other than "all"). */
  selection?: Record<string, DeviceSelectionRecord>;
}

/** The last decision for one device of a job and the events so far (the oldest dropped past a cap). */
export interface DeviceSelectionRecord {
  /** Steps completed at the last decision. */
  step: number;
  tier: string | null;
  budget: { rho: number } | { tau: number } | null;
  /** Modules trained now (active and probing). */
  active: string[];
  probing: string[];
  events: { step: number; kind: string; module: string; score?: number }[];
  /** Events left out to keep the record small. */
  eventsDropped: number;
}

export interface EnrollmentRecord {
  tokenHash: string;
  usesLeft: number;
  expiresAt: number;
  createdAt: number;
}

export interface Store {
  getAdminTokenHash(): Promise<string | null>;
  setAdminTokenHash(hash: string): Promise<void>;

  /**
   * Adds a device and indexes its token digest. With `enrollment`, also consumes one use of
   * that enrollment token in the same atomic step; returns false (and adds nothing) when the
   * enrollment is unknown, used up or expired at `enrollment.now`.
   */
  registerDevice(
    device: DeviceRecord,
    enrollment?: { tokenHash: string; now: number },
  ): Promise<boolean>;
  /** Replaces a device's record; its token digest cannot change. */
  updateDevice(device: DeviceRecord): Promise<void>;
  /** Sets only lastSeenAt, so it cannot undo an operator's concurrent change to the device. */
  touchDevice(id: string, at: number): Promise<void>;
  getDevice(id: string): Promise<DeviceRecord | null>;
  findDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | null>;
  listDevices(): Promise<DeviceRecord[]>;

  createJob(job: JobRecord): Promise<void>;
  /** Replaces a job only if its stored status is still `ifStatus`; false when it changed. */
  updateJob(job: JobRecord, ifStatus: JobStatus): Promise<boolean>;
  getJob(id: string): Promise<JobRecord | null>;
  listJobs(): Promise<JobRecord[]>;

  putEnrollment(enrollment: EnrollmentRecord): Promise<void>;
  getEnrollment(tokenHash: string): Promise<EnrollmentRecord | null>;
  listEnrollments(): Promise<EnrollmentRecord[]>;

  close(): void;
}

/** True when an enrollment can still register a device at `now`. */
export function enrollmentUsable(e: EnrollmentRecord | null, now: number): boolean {
  return e !== null && e.usesLeft > 0 && now < e.expiresAt;
}

export function storeError(what: string): Error {
  return new Error(`store: ${what}`);
}

export class MemoryStore implements Store {
  private adminTokenHash: string | null = null;
  private readonly devices = new Map<string, DeviceRecord>();
  private readonly deviceByToken = new Map<string, string>();
  private readonly jobs = new Map<string, JobRecord>();
  private readonly enrollments = new Map<string, EnrollmentRecord>();

  getAdminTokenHash(): Promise<string | null> {
    return Promise.resolve(this.adminTokenHash);
  }

  setAdminTokenHash(hash: string): Promise<void> {
    this.adminTokenHash = hash;
    return Promise.resolve();
  }

  registerDevice(
    device: DeviceRecord,
    enrollment?: { tokenHash: string; now: number },
  ): Promise<boolean> {
    if (this.devices.has(device.id)) {
      return Promise.reject(storeError(`device ${device.id} already exists`));
    }
    if (this.deviceByToken.has(device.tokenHash)) {
      return Promise.reject(storeError("device token reused"));
    }
    if (enrollment !== undefined) {
      const e = this.enrollments.get(enrollment.tokenHash) ?? null;
      if (!enrollmentUsable(e, enrollment.now)) return Promise.resolve(false);
      this.enrollments.set(enrollment.tokenHash, { ...e!, usesLeft: e!.usesLeft - 1 });
    }
    this.devices.set(device.id, structuredClone(device));
    this.deviceByToken.set(device.tokenHash, device.id);
    return Promise.resolve(true);
  }

  updateDevice(device: DeviceRecord): Promise<void> {
    const old = this.devices.get(device.id);
    if (old === undefined) {
      return Promise.reject(storeError(`device ${device.id} does not exist`));
    }
    if (old.tokenHash !== device.tokenHash) {
      return Promise.reject(storeError("a device's token cannot change"));
    }
    this.devices.set(device.id, structuredClone(device));
    return Promise.resolve();
  }

  touchDevice(id: string, at: number): Promise<void> {
    const d = this.devices.get(id);
    if (d !== undefined) d.lastSeenAt = at;
    return Promise.resolve();
  }

  getDevice(id: string): Promise<DeviceRecord | null> {
    const d = this.devices.get(id);
    return Promise.resolve(d === undefined ? null : structuredClone(d));
  }

  findDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | null> {
    const id = this.deviceByToken.get(tokenHash);
    return id === undefined ? Promise.resolve(null) : this.getDevice(id);
  }

  listDevices(): Promise<DeviceRecord[]> {
    return Promise.resolve([...this.devices.values()].map((d) => structuredClone(d)));
  }

  createJob(job: JobRecord): Promise<void> {
    if (this.jobs.has(job.id)) return Promise.reject(storeError(`job ${job.id} already exists`));
    this.jobs.set(job.id, structuredClone(job));
    return Promise.resolve();
  }

  updateJob(job: JobRecord, ifStatus: JobStatus): Promise<boolean> {
    const old = this.jobs.get(job.id);
    if (old === undefined || old.status !== ifStatus) return Promise.resolve(false);
    this.jobs.set(job.id, structuredClone(job));
    return Promise.resolve(true);
  }

  getJob(id: string): Promise<JobRecord | null> {
    const j = this.jobs.get(id);
    return Promise.resolve(j === undefined ? null : structuredClone(j));
  }

  listJobs(): Promise<JobRecord[]> {
    return Promise.resolve([...this.jobs.values()].map((j) => structuredClone(j)));
  }

  putEnrollment(enrollment: EnrollmentRecord): Promise<void> {
    this.enrollments.set(enrollment.tokenHash, structuredClone(enrollment));
    return Promise.resolve();
  }

  getEnrollment(tokenHash: string): Promise<EnrollmentRecord | null> {
    const e = this.enrollments.get(tokenHash);
    return Promise.resolve(e === undefined ? null : structuredClone(e));
  }

  listEnrollments(): Promise<EnrollmentRecord[]> {
    return Promise.resolve([...this.enrollments.values()].map((e) => structuredClone(e)));
  }

  close(): void {}
}
