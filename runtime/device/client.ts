/**
 * The device's calls to the coordinator's control plane (coordinator/README.md routes): register,
 * read its own record and jobs. Errors carry the status and the coordinator's message.
 */
import type { Capability } from "./capability.ts";
import type { StreamCodecs } from "../protocol/stream.ts";
import type { Proj } from "../model/modules.ts";

/** A job as a device sees it (GET /v1/devices/me/jobs). */
export interface DeviceJob {
  id: string;
  status: "pending" | "running" | "completed" | "failed" | "cancelled";
  name: string | null;
  base_model: string;
  targets: Proj[];
  rank: number;
  alpha: number;
  lr: number;
  steps: number;
  batch: number;
  seq_len: number;
  seed: number;
  codec: StreamCodecs;
  kr: Record<string, unknown>;
}

export interface Registration {
  device_id: string;
  token: string;
  tier: string;
  rho: number;
  micro_batch: number;
}

const MAX_RATE_LIMIT_RETRIES = 5;

/** A refusal by the coordinator: HTTP status, its error kind and message. */
export class CoordinatorError extends Error {
  constructor(readonly status: number, readonly kind: string, message: string) {
    super(message);
    this.name = "CoordinatorError";
  }
}

export class CoordinatorClient {
  readonly baseUrl: string;

  constructor(baseUrl: string, public token: string | null = null) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new Error(
        `--coordinator must be a URL such as http://127.0.0.1:8470, got "${baseUrl}"`,
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error(`--coordinator must be an http:// or https:// URL, got "${baseUrl}"`);
    }
    this.baseUrl = url.href.replace(/\/+$/, "");
  }

  /** The WebSocket URL of a job's step stream. */
  sessionUrl(jobId: string): string {
    return `${this.baseUrl.replace(/^http/, "ws")}/v1/jobs/${encodeURIComponent(jobId)}/session`;
  }

  async #call<T>(method: string, path: string, body?: unknown, token = this.token): Promise<T> {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    for (let attempt = 0;; attempt++) {
      try {
        res = await fetch(`${this.baseUrl}${path}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        throw new Error(`cannot reach the coordinator at ${this.baseUrl}: ${(e as Error).message}`);
      }
      // Rate limited (many devices behind one address): wait as told, a few times.
      if (res.status !== 429 || attempt >= MAX_RATE_LIMIT_RETRIES) break;
      await res.body?.cancel();
      const wait = Math.min(30, Math.max(1, Number(res.headers.get("retry-after") ?? 1)));
      await new Promise((r) => setTimeout(r, wait * 1000));
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text === "" ? null : JSON.parse(text);
    } catch {
      json = null;
    }
    if (!res.ok) {
      const err = (json as { error?: { kind?: string; message?: string } } | null)?.error;
      throw new CoordinatorError(
        res.status,
        err?.kind ?? "http",
        `coordinator refused ${method} ${path}: ${res.status} ${
          err?.message ?? text.slice(0, 200)
        }`,
      );
    }
    return json as T;
  }

  /**
   * Registers this device (admin or enrollment token, or none with open registration) and
   * keeps the device token it gets.
   */
  async register(capability: Capability, opts: { enrollToken?: string; name?: string } = {}) {
    const r = await this.#call<Registration>("POST", "/v1/devices", {
      ...(opts.name ? { name: opts.name } : {}),
      capability: {
        gflops: capability.gflops,
        threads: capability.threads,
        memory_mb: capability.memoryMb,
      },
    }, opts.enrollToken ?? null);
    this.token = r.token;
    return r;
  }

  me(): Promise<{ id: string; tier: string; rho: number; micro_batch: number }> {
    return this.#call("GET", "/v1/devices/me");
  }

  async jobs(): Promise<DeviceJob[]> {
    return (await this.#call<{ jobs: DeviceJob[] }>("GET", "/v1/devices/me/jobs")).jobs;
  }

  job(id: string): Promise<DeviceJob> {
    return this.#call("GET", `/v1/jobs/${encodeURIComponent(id)}`);
  }
}
