/**
 * Test helpers for the step stream: a real coordinator (control plane + StepExecutor) on
 * 127.0.0.1 port 0 that can record every byte it receives, with shortcuts to register devices and
 * create jobs. Not part of the runtime API.
 */
import { assertEquals } from "../tests/util.ts";
import { createApp } from "./app.ts";
import { ensureAdminToken } from "./auth.ts";
import { type ExecutorOptions, StepExecutor } from "./executor.ts";
import { type CoordinatorMetrics, createCoordinatorMetrics } from "./metrics.ts";
import { MemoryStore } from "./store.ts";
import { TEST_ADMIN_TOKEN } from "./testing.ts";

export interface ReceivedBytes {
  /** Each HTTP request as text: method, URL, headers, body. */
  http: string[];
  /** Each WebSocket message a device sent (unmasked payload), in arrival order. */
  frames: Uint8Array[];
}

export interface Stack {
  url: string;
  store: MemoryStore;
  executor: StepExecutor;
  metrics: CoordinatorMetrics;
  received: ReceivedBytes;
  /** An admin call; returns status and JSON. */
  call(method: string, path: string, body?: unknown, token?: string | null): Promise<{
    status: number;
    json: Record<string, unknown>;
  }>;
  /** Registers a device with the admin token: its id and token. */
  device(name?: string): Promise<{ id: string; token: string }>;
  /** Creates a job (defaults: stories260K, rank 4, batch 2, seq_len 16); returns its id. */
  job(spec: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

export async function startStack(
  opts: Partial<ExecutorOptions> & { record?: boolean; openRegistration?: boolean } = {},
): Promise<Stack> {
  const store = new MemoryStore();
  await ensureAdminToken(store, TEST_ADMIN_TOKEN);
  const metrics = createCoordinatorMetrics();
  const received: ReceivedBytes = { http: [], frames: [] };
  const record = opts.record ?? false;
  const executor = new StepExecutor({
    host: "in-thread",
    ...opts,
    metrics,
    store,
    tap: (frame, direction, info) => {
      if (record && direction === "up") received.frames.push(frame.slice());
      opts.tap?.(frame, direction, info);
    },
  });
  const app = createApp({
    store,
    executor,
    metrics,
    // Many devices share 127.0.0.1 in these tests: no per-address rate limit to trip over.
    config: {
      openRegistration: opts.openRegistration ?? false,
      rateLimit: { perSecond: 1e6, burst: 1e6, maxKeys: 1000 },
    },
  });
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    async (req, info) => {
      if (record) {
        const head = `${req.method} ${req.url}\n` +
          [...req.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
        if (req.body !== null) {
          // Read the body once and hand the app an equal request (a WebSocket upgrade has none
          // and must stay the original request).
          const body = await req.text();
          received.http.push(`${head}\n\n${body}`);
          req = new Request(req.url, { method: req.method, headers: req.headers, body });
        } else received.http.push(head);
      }
      return app.fetch(req, { remoteAddr: { hostname: info.remoteAddr.hostname } });
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}`;
  const call: Stack["call"] = async (method, path, body, token = TEST_ADMIN_TOKEN) => {
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : {} };
  };
  return {
    url,
    store,
    executor,
    metrics,
    received,
    call,
    async device(name) {
      const r = await call("POST", "/v1/devices", {
        ...(name ? { name } : {}),
        capability: { gflops: 20, threads: 1, memory_mb: 1024 },
      });
      assertEquals(r.status, 201, JSON.stringify(r.json));
      return { id: r.json.device_id as string, token: r.json.token as string };
    },
    async job(spec) {
      const r = await call("POST", "/v1/jobs", {
        base_model: "stories260K",
        rank: 4,
        batch: 2,
        seq_len: 16,
        steps: 3,
        ...spec,
      });
      assertEquals(r.status, 201, JSON.stringify(r.json));
      return r.json.id as string;
    },
    async close() {
      await executor.close();
      await server.shutdown();
    },
  };
}

/** The first `chars` characters of a shared dataset (a device's private text in tests). */
export function sharedText(path: string, chars: number): string {
  const url = new URL(`../../shared/datasets/${path}`, import.meta.url);
  return Deno.readTextFileSync(url).slice(0, chars);
}
