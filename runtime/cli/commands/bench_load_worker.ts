/// <reference lib="deno.worker" />
/**
 * The simulated devices of `dlora bench load`, in a worker so their compute does not share the
 * coordinator's event loop: each is a real runDevice (real frames over its own WebSocket) that
 * loops steps until the bench cancels its job. Messages: in {t:"start", url, text, devices} then
 * {t:"stop"}; out {t:"warm"} once every device has finished a step, then {t:"done", steps,
 * errors}.
 */
import { runDevice } from "../../device/device.ts";

export type LoadToWorker =
  | { t: "start"; url: string; text: string; devices: { token: string; jobId: string }[] }
  | { t: "stop" };

export interface LoadStep {
  /** Date.now() when the step ended. */
  end: number;
  ms: number;
}

export type LoadFromWorker =
  | { t: "warm" }
  | { t: "done"; steps: LoadStep[]; errors: string[] };

let stopping = false;
const steps: LoadStep[] = [];
const errors: string[] = [];

self.onmessage = (e: MessageEvent<LoadToWorker>) => {
  const m = e.data;
  if (m.t === "stop") {
    stopping = true;
    return;
  }
  const stepped = new Set<number>();
  let warm = false;
  const runs = m.devices.map((d, i) =>
    runDevice({
      coordinatorUrl: m.url,
      token: d.token,
      jobId: d.jobId,
      text: m.text,
      threads: 1,
      onStep: (s) => {
        if (stopping) return;
        steps.push({ end: Date.now(), ms: 1000 * s.seconds });
        stepped.add(i);
        if (!warm && stepped.size === m.devices.length) {
          warm = true;
          self.postMessage({ t: "warm" } satisfies LoadFromWorker);
        }
      },
    }).then(
      () => {
        if (!stopping) errors.push(`device ${i}: its run ended before the bench stopped it`);
      },
      (err: Error) => {
        // After "stop" the bench cancels the jobs: the sessions end as they should.
        if (!stopping) errors.push(`device ${i}: ${err.message}`);
      },
    )
  );
  Promise.all(runs).then(() => {
    self.postMessage({ t: "done", steps, errors } satisfies LoadFromWorker);
  });
};
