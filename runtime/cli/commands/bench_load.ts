/**
 * `dlora bench load [--quick] [--json] [--seconds S]`: N simulated devices (N = 8, 32) against one
 * coordinator (StepExecutor, frozen blocks in its model worker), everything on 127.0.0.1. Each
 * device is a real runDevice — real frames over its own WebSocket — on stories260K with a tiny
 * batch (1 × 32 tokens, rank 4), looping steps for S seconds (default 30; --quick 3) after every
 * device has finished its first step; the devices run in a worker of their own so their compute
 * does not share the coordinator's event loop. Meanwhile /healthz is polled every 50 ms. Rows:
 * steps per second (all devices), step latency p50/p99 as the devices see it, errors (device runs
 * that failed, ERROR frames the coordinator counted, /healthz answers other than 200) and the
 * /healthz p99.
 */
import { sharedText, startStack } from "../../../coordinator/step_testing.ts";
import type { LoadFromWorker, LoadStep, LoadToWorker } from "./bench_load_worker.ts";

export interface LoadRow {
  devices: number;
  seconds: number;
  steps: number;
  steps_per_s: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  healthz_p99_ms: number;
  healthz_polls: number;
}

export const LOAD_DEVICES = [8, 32] as const;
const JOB = { base_model: "stories260K", rank: 4, batch: 1, seq_len: 32, steps: 1_000_000 };
const WARM_TIMEOUT_MS = 120_000;

/** The q-quantile (nearest rank) of `xs`; NaN when empty. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

const r1 = (x: number) => +x.toFixed(1);

/** One load level: `n` devices for `seconds` against a fresh coordinator. */
export async function measureLoad(n: number, seconds: number): Promise<LoadRow> {
  const stack = await startStack({ host: "worker", threads: 1 });
  const worker = new Worker(new URL("./bench_load_worker.ts", import.meta.url), {
    type: "module",
  });
  const jobs: string[] = [];
  try {
    const devices: { token: string; jobId: string }[] = [];
    for (let i = 0; i < n; i++) {
      const d = await stack.device(`load-${i}`);
      const jobId = await stack.job({ ...JOB, devices: [d.id] });
      jobs.push(jobId);
      devices.push({ token: d.token, jobId });
    }
    let warmed!: () => void;
    const warm = new Promise<void>((resolve) => (warmed = resolve));
    let finished!: (m: Extract<LoadFromWorker, { t: "done" }>) => void;
    const done = new Promise<Extract<LoadFromWorker, { t: "done" }>>((r) => (finished = r));
    worker.onmessage = (e: MessageEvent<LoadFromWorker>) => {
      if (e.data.t === "warm") warmed();
      else finished(e.data);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      finished({ t: "done", steps: [], errors: [`device worker: ${e.message}`] });
      warmed();
    };
    const text = sharedText("tinyshakespeare.txt", 20_000);
    worker.postMessage({ t: "start", url: stack.url, text, devices } satisfies LoadToWorker);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const warmOk = await Promise.race([
      warm.then(() => true),
      done.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), WARM_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);

    // The timed window: /healthz every 50 ms while the devices loop.
    const healthz: number[] = [];
    let healthzErrors = 0;
    const t0 = Date.now();
    const errorsBefore = await frameErrors(stack.url);
    if (warmOk) {
      while (Date.now() - t0 < seconds * 1000) {
        const a = performance.now();
        try {
          const res = await fetch(`${stack.url}/healthz`);
          await res.body?.cancel();
          if (res.status !== 200) healthzErrors++;
        } catch {
          healthzErrors++;
        }
        const took = performance.now() - a;
        healthz.push(took);
        await new Promise((r) => setTimeout(r, Math.max(0, 50 - took)));
      }
    }
    const t1 = Date.now();
    const coordinatorErrors = (await frameErrors(stack.url)) - errorsBefore;
    worker.postMessage({ t: "stop" } satisfies LoadToWorker);
    for (const id of jobs) await stack.call("POST", `/v1/jobs/${id}/cancel`);
    const result = await done;
    const inWindow = result.steps.filter((s: LoadStep) => s.end >= t0 && s.end <= t1);
    const ms = inWindow.map((s) => s.ms);
    const elapsed = (t1 - t0) / 1000;
    for (const e of result.errors.slice(0, 5)) console.error(`bench load: ${e}`);
    return {
      devices: n,
      seconds: r1(elapsed),
      steps: inWindow.length,
      steps_per_s: elapsed > 0 ? r1(inWindow.length / elapsed) : 0,
      p50_ms: r1(quantile(ms, 0.5)),
      p99_ms: r1(quantile(ms, 0.99)),
      errors: result.errors.length + coordinatorErrors + healthzErrors + (warmOk ? 0 : 1),
      healthz_p99_ms: r1(quantile(healthz, 0.99)),
      healthz_polls: healthz.length,
    };
  } finally {
    worker.terminate();
    await stack.close();
  }
}

/** ERROR frames and failed sessions the coordinator counted so far. */
async function frameErrors(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^dlora_errors_total\{[^}]*\} (\d+(?:\.\d+)?)$/gm)) {
    n += Number(m[1]);
  }
  return n;
}

export async function benchLoad(
  o: { quick: boolean; seconds?: number },
): Promise<Record<string, unknown>> {
  const seconds = o.seconds ?? (o.quick ? 3 : 30);
  const rows: LoadRow[] = [];
  for (const n of LOAD_DEVICES) {
    const row = await measureLoad(n, seconds);
    rows.push(row);
    console.error(
      `bench load: ${n} devices, ${row.seconds} s: ${row.steps_per_s} steps/s, step p50 ` +
        `${row.p50_ms} ms p99 ${row.p99_ms} ms, ${row.errors} errors, /healthz p99 ` +
        `${row.healthz_p99_ms} ms (${row.healthz_polls} polls)`,
    );
  }
  const worst = (f: (r: LoadRow) => number) => Math.max(...rows.map(f));
  const errors = rows.reduce((a, r) => a + r.errors, 0);
  const hz = worst((r) => r.healthz_p99_ms);
  return {
    rows,
    targets: [
      { name: "errors = 0", measured: errors, met: errors === 0 },
      { name: "healthz p99 < 100 ms", measured: hz, met: hz < 100 },
    ],
    quick: o.quick,
  };
}
