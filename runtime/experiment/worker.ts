/// <reference lib="deno.worker" />
/**
 * A worker of `dlora experiment kr --jobs N`: runs the runs it is sent, one at a time, each on
 * one thread. The model, tokenizer and each task's tokenized data are loaded once per worker.
 * Messages: in {t:"run", shape, spec}; out {t:"row", id, row} or {t:"error", id, message}.
 */
import { loadModel } from "../load.ts";
import type { Row } from "./aggregate.ts";
import { type ExperimentShape, runId, type RunSpec } from "./grid.ts";
import { runInProcess } from "./inprocess.ts";
import { loadTaskData, runOne, type TaskData } from "./run.ts";

export type ToWorker = { t: "run"; shape: ExperimentShape; spec: RunSpec };
export type FromWorker =
  | { t: "row"; id: string; row: Row }
  | { t: "error"; id: string; message: string };

let loaded: ReturnType<typeof loadModel> | null = null;
let loadedFor = "";
const tasks = new Map<string, Promise<TaskData>>();

async function handle(m: ToWorker): Promise<Row> {
  const key = JSON.stringify(m.shape);
  if (loaded === null || loadedFor !== key) {
    // A different job shape (never within one experiment): start from scratch.
    loaded = loadModel(m.shape.model, { requireTokenizer: true });
    loadedFor = key;
    tasks.clear();
  }
  const model = await loaded;
  let data = tasks.get(m.spec.task);
  if (!data) {
    data = loadTaskData(m.spec.task, model.tokenizer!, m.shape);
    tasks.set(m.spec.task, data);
  }
  return runOne({
    weights: model.weights,
    tokenizer: model.tokenizer!,
    shape: m.shape,
    data: await data,
    runner: runInProcess,
  }, m.spec);
}

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const id = runId(e.data.spec);
  try {
    const row = await handle(e.data);
    self.postMessage({ t: "row", id, row } satisfies FromWorker);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    self.postMessage({ t: "error", id, message } satisfies FromWorker);
  }
};
