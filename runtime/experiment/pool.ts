/**
 * Runs the experiment's runs in N Deno workers (runtime/experiment/worker.ts), each worker one
 * run at a time on one thread: runs are independent, so N workers use N cores. A run that fails
 * is reported and the others go on; a worker that dies is replaced.
 */
import type { Row } from "./aggregate.ts";
import { type ExperimentShape, runId, type RunSpec } from "./grid.ts";
import type { FromWorker, ToWorker } from "./worker.ts";

export interface PoolOptions {
  jobs: number;
  shape: ExperimentShape;
  /** After each finished run (e.g. to save rows.json). */
  onRow?: (row: Row, spec: RunSpec) => void | Promise<void>;
  onError?: (spec: RunSpec, message: string) => void;
  /** The worker module (default ./worker.ts; tests give one of their own). */
  workerUrl?: URL;
}

export interface PoolResult {
  rows: Row[];
  failed: { id: string; message: string }[];
}

function newWorker(url = new URL("./worker.ts", import.meta.url)): Worker {
  return new Worker(url, { type: "module" });
}

/** Sends one run to `w` and waits for its answer (a dead worker answers with an error). */
function runOn(w: Worker, shape: ExperimentShape, spec: RunSpec): Promise<FromWorker> {
  const id = runId(spec);
  return new Promise((resolve) => {
    w.onmessage = (e: MessageEvent<FromWorker>) => resolve(e.data);
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      resolve({ t: "error", id, message: `worker crashed: ${e.message}` });
    };
    w.postMessage({ t: "run", shape, spec } satisfies ToWorker);
  });
}

export async function runPool(specs: readonly RunSpec[], o: PoolOptions): Promise<PoolResult> {
  if (!Number.isInteger(o.jobs) || o.jobs < 1) {
    throw new RangeError(`jobs must be an integer ≥ 1, got ${o.jobs}`);
  }
  const queue = [...specs];
  const rows: Row[] = [], failed: PoolResult["failed"] = [];
  const slot = async () => {
    let w = newWorker(o.workerUrl);
    try {
      for (let spec = queue.shift(); spec !== undefined; spec = queue.shift()) {
        const answer = await runOn(w, o.shape, spec);
        if (answer.t === "row") {
          rows.push(answer.row);
          await o.onRow?.(answer.row, spec);
        } else {
          failed.push({ id: answer.id, message: answer.message });
          o.onError?.(spec, answer.message);
          if (answer.message.startsWith("worker crashed")) {
            w.terminate();
            w = newWorker(o.workerUrl);
          }
        }
      }
    } finally {
      w.terminate();
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.jobs, specs.length) }, slot));
  return { rows, failed };
}
