/// <reference lib="deno.unstable" />
/**
 * The durable `Store` on Deno KV (Deno only; needs `--unstable-kv`, which deno.json turns on).
 * `Deno.openKv(path)` keeps everything in one embedded SQLite file, so a coordinator restarted
 * on the same `--kv PATH` keeps its registrations, jobs and admin token. Multi-record changes
 * (a registration consuming an enrollment use, a job status change) are atomic with
 * versionstamp checks, so two coordinator processes on one KV cannot both win a race.
 */
import {
  type DeviceRecord,
  type DeviceSelectionRecord,
  type EnrollmentRecord,
  enrollmentUsable,
  type JobRecord,
  type JobStatus,
  type Store,
  storeError,
} from "./store.ts";

const ADMIN = ["admin", "token_hash"];
const DEVICES = "devices";
const DEVICE_TOKENS = "device_tokens";
const JOBS = "jobs";
const ENROLLMENTS = "enrollments";
const SELECTIONS = "selections";

/** Optimistic-concurrency retries before a contended write is reported as an error. */
const MAX_RETRIES = 16;

export class KvStore implements Store {
  private constructor(private readonly kv: Deno.Kv, readonly path: string | undefined) {}

  /** Opens (creating if needed) the KV file at `path`; ":memory:" for a throwaway store. */
  static async open(path?: string): Promise<KvStore> {
    try {
      return new KvStore(await Deno.openKv(path), path);
    } catch (e) {
      throw new Error(
        `cannot open the coordinator store at ${path ?? "(default location)"}: ${
          (e as Error).message
        }`,
      );
    }
  }

  async getAdminTokenHash(): Promise<string | null> {
    return (await this.kv.get<string>(ADMIN)).value;
  }

  async setAdminTokenHash(hash: string): Promise<void> {
    await this.kv.set(ADMIN, hash);
  }

  async registerDevice(
    device: DeviceRecord,
    enrollment?: { tokenHash: string; now: number },
  ): Promise<boolean> {
    const deviceKey = [DEVICES, device.id];
    const tokenKey = [DEVICE_TOKENS, device.tokenHash];
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const op = this.kv.atomic()
        .check({ key: deviceKey, versionstamp: null })
        .check({ key: tokenKey, versionstamp: null });
      if (enrollment !== undefined) {
        const key = [ENROLLMENTS, enrollment.tokenHash];
        const e = await this.kv.get<EnrollmentRecord>(key);
        if (!enrollmentUsable(e.value, enrollment.now)) return false;
        op.check(e).set(key, { ...e.value!, usesLeft: e.value!.usesLeft - 1 });
      }
      const res = await op.set(deviceKey, device).set(tokenKey, device.id).commit();
      if (res.ok) return true;
      if ((await this.kv.get(deviceKey)).versionstamp !== null) {
        throw storeError(`device ${device.id} already exists`);
      }
      if ((await this.kv.get(tokenKey)).versionstamp !== null) {
        throw storeError("device token reused");
      }
      // Another registration used the same enrollment token meanwhile: read it again.
    }
    throw storeError(`registering ${device.id}: too much contention on the enrollment token`);
  }

  async updateDevice(device: DeviceRecord): Promise<void> {
    const key = [DEVICES, device.id];
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const old = await this.kv.get<DeviceRecord>(key);
      if (old.value === null) throw storeError(`device ${device.id} does not exist`);
      if (old.value.tokenHash !== device.tokenHash) {
        throw storeError("a device's token cannot change");
      }
      if ((await this.kv.atomic().check(old).set(key, device).commit()).ok) return;
    }
    throw storeError(`updating ${device.id}: too much contention`);
  }

  async touchDevice(id: string, at: number): Promise<void> {
    const key = [DEVICES, id];
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const old = await this.kv.get<DeviceRecord>(key);
      if (old.value === null) return;
      const next = { ...old.value, lastSeenAt: at };
      if ((await this.kv.atomic().check(old).set(key, next).commit()).ok) return;
    }
    throw storeError(`touching ${id}: too much contention`);
  }

  async getDevice(id: string): Promise<DeviceRecord | null> {
    return (await this.kv.get<DeviceRecord>([DEVICES, id])).value;
  }

  async findDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | null> {
    const id = (await this.kv.get<string>([DEVICE_TOKENS, tokenHash])).value;
    return id === null ? null : await this.getDevice(id);
  }

  async listDevices(): Promise<DeviceRecord[]> {
    return await this.listValues<DeviceRecord>(DEVICES);
  }

  async createJob(job: JobRecord): Promise<void> {
    const key = [JOBS, job.id];
    const res = await this.kv.atomic().check({ key, versionstamp: null }).set(key, job).commit();
    if (!res.ok) throw storeError(`job ${job.id} already exists`);
  }

  async updateJob(job: JobRecord, ifStatus: JobStatus): Promise<boolean> {
    const key = [JOBS, job.id];
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const old = await this.kv.get<JobRecord>(key);
      if (old.value === null || old.value.status !== ifStatus) return false;
      if ((await this.kv.atomic().check(old).set(key, job).commit()).ok) return true;
    }
    throw storeError(`updating ${job.id}: too much contention`);
  }

  async getJob(id: string): Promise<JobRecord | null> {
    return (await this.kv.get<JobRecord>([JOBS, id])).value;
  }

  async listJobs(): Promise<JobRecord[]> {
    return await this.listValues<JobRecord>(JOBS);
  }

  async putSelection(
    jobId: string,
    deviceId: string,
    record: DeviceSelectionRecord,
  ): Promise<void> {
    await this.kv.set([SELECTIONS, jobId, deviceId], record);
  }

  async getSelection(jobId: string, deviceId: string): Promise<DeviceSelectionRecord | null> {
    return (await this.kv.get<DeviceSelectionRecord>([SELECTIONS, jobId, deviceId])).value;
  }

  async listSelections(jobId: string): Promise<Record<string, DeviceSelectionRecord>> {
    const out: Record<string, DeviceSelectionRecord> = {};
    const entries = this.kv.list<DeviceSelectionRecord>({ prefix: [SELECTIONS, jobId] });
    for await (const e of entries) out[e.key[2] as string] = e.value;
    return out;
  }

  async putEnrollment(enrollment: EnrollmentRecord): Promise<void> {
    await this.kv.set([ENROLLMENTS, enrollment.tokenHash], enrollment);
  }

  async getEnrollment(tokenHash: string): Promise<EnrollmentRecord | null> {
    return (await this.kv.get<EnrollmentRecord>([ENROLLMENTS, tokenHash])).value;
  }

  async listEnrollments(): Promise<EnrollmentRecord[]> {
    return await this.listValues<EnrollmentRecord>(ENROLLMENTS);
  }

  close(): void {
    this.kv.close();
  }

  private async listValues<T>(prefix: string): Promise<T[]> {
    const out: T[] = [];
    for await (const entry of this.kv.list<T>({ prefix: [prefix] })) out.push(entry.value);
    return out;
  }
}
