/**
 * One run of the experiment: the device's private data for a task (its own train / held-out
 * split), a training run through the real coordinator and device sessions (runInProcess), and the
 * held-out NLL (DLORA.md §7) with the modules active at the end and with every module.
 */
import { readSource, splitFold } from "../demo/data.ts";
import { totalFlops } from "../device/flops.ts";
import { LlamaModel } from "../model/llama.ts";
import type { LlamaWeights } from "../model/weights.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { nllOfIds } from "../train/nll.ts";
import type { Row } from "./aggregate.ts";
import { type ExperimentShape, krOptions, runId, type RunSpec, taskByName } from "./grid.ts";
import type { InProcessResult, InProcessRun } from "./inprocess.ts";

/** A task's data as one device holds it. */
export interface TaskData {
  task: string;
  /** Token ids of the train part (BOS first). */
  trainIds: Int32Array;
  /** The first `evalTokens` token ids of the held-out part (BOS first). */
  heldOutIds: Int32Array;
}

/**
 * Reads a task's text through the data-set resolver (`datasets/` under the search roots), keeps
 * its first `maxChars` characters, holds out the last `heldOut` fraction (at a line boundary) and
 * tokenizes both parts; the held-out ids are cut to `evalTokens`.
 */
export async function loadTaskData(
  taskName: string,
  tokenizer: Tokenizer,
  shape: ExperimentShape,
): Promise<TaskData> {
  const task = taskByName(taskName);
  const text = await readSource(task);
  const split = splitFold(text, { heldOut: shape.heldOut, fold: 0, maxChars: shape.maxChars });
  const trainIds = Int32Array.from(tokenizer.encode(split.train, { bos: true }));
  const heldOutIds = Int32Array.from(
    tokenizer.encode(split.heldOut, { bos: true }).slice(0, shape.evalTokens),
  );
  const need = shape.batch * (shape.seqLen + 1);
  if (trainIds.length < need) {
    throw new Error(
      `task ${taskName}: ${trainIds.length} training tokens, fewer than one batch (${need})`,
    );
  }
  if (heldOutIds.length < 2) throw new Error(`task ${taskName}: the held-out part is empty`);
  return { task: taskName, trainIds, heldOutIds };
}

export type Runner = (o: InProcessRun) => Promise<InProcessResult>;

export interface RunContext {
  weights: LlamaWeights;
  tokenizer: Tokenizer;
  shape: ExperimentShape;
  data: TaskData;
  runner: Runner;
  onStep?: (step: number, loss: number) => void;
}

const round = (x: number, digits: number) => +x.toFixed(digits);

function countEvents(events: InProcessResult["events"]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of events) out[e.kind] = (out[e.kind] ?? 0) + 1;
  return out;
}

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

/** Trains one run and measures it; the row issue 5 asks for, with the breakdowns as extras. */
export async function runOne(ctx: RunContext, spec: RunSpec): Promise<Row> {
  const { shape, data } = ctx;
  if (spec.task !== data.task) {
    throw new Error(`run ${runId(spec)}: given the data of task ${data.task}`);
  }
  const started = performance.now();
  const r = await ctx.runner({
    weights: ctx.weights,
    tokenizer: ctx.tokenizer,
    trainIds: data.trainIds,
    job: {
      rank: shape.rank,
      alpha: shape.alpha,
      lr: shape.lr,
      steps: spec.steps,
      batch: shape.batch,
      seqLen: shape.seqLen,
      seed: spec.seed,
      targets: shape.targets,
      codec: spec.codec,
      kr: krOptions(spec, shape),
    },
    tierRho: spec.budget ?? 1,
    threads: shape.threads,
    onStep: ctx.onStep,
  });
  const evalStart = performance.now();
  const lora = r.lora;
  const model = new LlamaModel(lora.k, ctx.weights);
  let nllActive: number, nllAll: number;
  try {
    lora.setActiveKeys(r.finalActive);
    nllActive = (await nllOfIds(model, data.heldOutIds, shape.evalSeqLen, { hooks: lora }))
      .mean_nll;
    const everything = lora.moduleKeys();
    if (r.finalActive.length === everything.length) nllAll = nllActive;
    else {
      lora.setActiveKeys(everything);
      nllAll = (await nllOfIds(model, data.heldOutIds, shape.evalSeqLen, { hooks: lora }))
        .mean_nll;
    }
  } finally {
    model.free();
    lora.free();
    lora.k.close();
  }
  const f = r.flops;
  const last = r.losses.slice(-10);
  return {
    task: spec.task,
    policy: spec.policy,
    score: spec.score,
    budget: spec.budget,
    seed: spec.seed,
    steps: spec.steps,
    codec: spec.codec,
    ...(spec.rank ? { rank: spec.rank } : {}),
    nll_active: round(nllActive, 6),
    nll_all: round(nllAll, 6),
    device_flops: totalFlops(f),
    bytes_up: sum(r.bytesUp),
    bytes_down: sum(r.bytesDown),
    module_steps_frac: round(r.moduleSteps / r.moduleStepsAll, 6),
    wall_s: round((performance.now() - started) / 1000, 2),
    id: runId(spec),
    device_flops_lora: f.loraForward + f.loraBackward + f.optimizer,
    flops_by_kind: { ...f },
    bytes_up_by_type: r.bytesUp,
    bytes_down_by_type: r.bytesDown,
    module_steps: r.moduleSteps,
    module_steps_all: r.moduleStepsAll,
    events_by_kind: countEvents(r.events),
    final_active: r.finalActive,
    train_s: round(r.wallSeconds, 2),
    eval_s: round((performance.now() - evalStart) / 1000, 2),
    eval_tokens: data.heldOutIds.length,
    train_tokens: data.trainIds.length,
    loss_first: round(r.losses[0], 5),
    loss_last10: round(last.reduce((a, b) => a + b, 0) / last.length, 5),
    losses: r.losses.map((x) => round(x, 4)),
  };
}
