/** Test helpers for the coordinator: a Prometheus text reader, a store snapshot, doubles. */
import { assert, assertEquals } from "../tests/util.ts";
import { type CoordinatorConfig, createApp } from "./app.ts";
import { ensureAdminToken } from "./auth.ts";
import type { Clock, Executor, SessionOpen } from "./deps.ts";
import { type CoordinatorMetrics, createCoordinatorMetrics } from "./metrics.ts";
import { MemoryStore, type Store } from "./store.ts";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  help: string;
  type: string;
  samples: Sample[];
}

/** A strict reader of the text exposition format: every sample under its HELP and TYPE. */
export function parsePrometheus(text: string): Map<string, Family> {
  assert(text.endsWith("\n"), "exposition ends with a newline");
  const families = new Map<string, Family>();
  let current: string | null = null;
  for (const line of text.slice(0, -1).split("\n")) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (help) {
      assert(!families.has(help[1]), `family ${help[1]} appears twice`);
      families.set(help[1], { help: help[2], type: "", samples: [] });
      current = help[1];
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/
      .exec(line);
    if (type) {
      assertEquals(type[1], current, "TYPE follows its HELP");
      families.get(type[1])!.type = type[2];
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert(sample !== null, `not a sample line: ${JSON.stringify(line)}`);
    const [, name, , labelText, valueText] = sample;
    assert(current !== null && name.startsWith(current), `${name} outside its family`);
    const family = families.get(current)!;
    assert(family.type !== "", `${current} has no TYPE before its samples`);
    const labels: Record<string, string> = {};
    if (labelText) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let m;
      while (re.lastIndex < labelText.length && (m = re.exec(labelText)) !== null) {
        labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      }
      assertEquals(re.lastIndex, labelText.length, `labels parse fully: ${labelText}`);
    }
    const value = valueText === "+Inf"
      ? Infinity
      : valueText === "-Inf"
      ? -Infinity
      : Number(valueText);
    assert(valueText === "NaN" || !Number.isNaN(value), `bad value ${valueText}`);
    family.samples.push({ name, labels, value });
  }
  return families;
}

/** Buckets cumulative and ordered, +Inf last and equal to _count, _sum present. */
export function checkHistogram(family: Family, name: string): void {
  const buckets = family.samples.filter((s) => s.name === `${name}_bucket`);
  assert(buckets.length > 0, `${name} has buckets`);
  const les = buckets.map((b) => (b.labels.le === "+Inf" ? Infinity : Number(b.labels.le)));
  for (let i = 1; i < buckets.length; i++) {
    assert(les[i] > les[i - 1], `${name}: le ascending`);
    assert(buckets[i].value >= buckets[i - 1].value, `${name}: buckets cumulative`);
  }
  assertEquals(les.at(-1), Infinity, `${name}: last bucket is +Inf`);
  const count = family.samples.find((s) => s.name === `${name}_count`);
  assert(family.samples.some((s) => s.name === `${name}_sum`), `${name}_sum present`);
  assertEquals(count?.value, buckets.at(-1)!.value, `${name}: +Inf bucket = _count`);
}

/** Everything a store holds, in a stable order, for before/after comparisons. */
export async function snapshot(store: Store): Promise<string> {
  const byId = <T extends { id: string }>(xs: T[]) => xs.sort((a, b) => (a.id < b.id ? -1 : 1));
  return JSON.stringify({
    admin: await store.getAdminTokenHash(),
    devices: byId(await store.listDevices()),
    jobs: byId(await store.listJobs()),
    enrollments: (await store.listEnrollments()).sort((a, b) => a.tokenHash < b.tokenHash ? -1 : 1),
  });
}

/** A clock the test moves by hand. */
export class ManualClock implements Clock {
  constructor(public ms = Date.UTC(2025, 0, 1)) {}
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** Records what the app hands the step stream; answers each session with a 200. */
export class RecordingExecutor implements Executor {
  readonly sessions: SessionOpen[] = [];
  readonly cancelled: string[] = [];
  openSession(session: SessionOpen): Response {
    this.sessions.push(session);
    return new Response("session", { status: 200 });
  }
  jobCancelled(jobId: string): void {
    this.cancelled.push(jobId);
  }
}

export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789abcdefghijklmnop";

export interface TestCoordinator {
  app: ReturnType<typeof createApp>;
  store: MemoryStore;
  clock: ManualClock;
  executor: RecordingExecutor;
  metrics: CoordinatorMetrics;
  call(
    method: string,
    path: string,
    opts?: { token?: string | null; body?: unknown; addr?: string; headers?: HeadersInit },
  ): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }>;
}

export async function testCoordinator(
  config: Partial<CoordinatorConfig> = {},
): Promise<TestCoordinator> {
  const store = new MemoryStore();
  await ensureAdminToken(store, TEST_ADMIN_TOKEN);
  const clock = new ManualClock();
  const executor = new RecordingExecutor();
  const metrics = createCoordinatorMetrics();
  const app = createApp({ store, executor, clock, config, metrics });
  return {
    app,
    store,
    clock,
    executor,
    metrics,
    async call(method, path, opts = {}) {
      const headers = new Headers(opts.headers);
      const token = opts.token === undefined ? TEST_ADMIN_TOKEN : opts.token;
      if (token !== null) headers.set("authorization", `Bearer ${token}`);
      let body: BodyInit | undefined;
      if (opts.body !== undefined) {
        body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
        headers.set("content-type", "application/json");
      }
      const res = await app.request(path, { method, headers, body }, {
        remoteAddr: { hostname: opts.addr ?? "192.0.2.1" },
      });
      const text = await res.text();
      let json: Record<string, unknown> = {};
      try {
        json = text === "" ? {} : JSON.parse(text);
      } catch {
        json = { text };
      }
      return { status: res.status, json, headers: res.headers };
    },
  };
}
