/// <reference lib="deno.worker" />
/**
 * A stand-in experiment worker for pool.test.ts (not part of the runtime): seed 1 answers a
 * synthetic row, seed 2 reports a failed run, seed 3 crashes the worker (an uncaught error).
 */
import { runId } from "./grid.ts";
import { syntheticRow } from "./testing.ts";
import type { FromWorker, ToWorker } from "./worker.ts";

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const { spec } = e.data;
  const id = runId(spec);
  if (spec.seed === 3) throw new Error(`crash on ${id}`);
  if (spec.seed === 2) {
    self.postMessage({ t: "error", id, message: `run ${id} failed` } satisfies FromWorker);
    return;
  }
  const row = syntheticRow({ task: spec.task, policy: spec.policy, seed: spec.seed });
  self.postMessage({ t: "row", id, row } satisfies FromWorker);
};
