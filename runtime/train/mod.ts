/**
 * Single-process LoRA training and evaluation over the engine (runtime/model): the training loop,
 * its learning-rate schedule, §7 held-out NLL, LocalLora ⇄ PEFT adapter conversion, and the
 * training-step throughput measurement `bench step` reports.
 */
export {
  ACTIVE_MODULES_KEY,
  loraFromAdapter,
  loraToAdapter,
  type ToAdapterOptions,
} from "./adapter.ts";
export { heldOutNll, nllOfIds, type NllOptions, type NllResult } from "./nll.ts";
export { learningRate, type Schedule, type ScheduleConfig, SCHEDULES } from "./schedule.ts";
export {
  type StepInfo,
  train,
  type TrainOptions,
  type TrainResult,
  validateTrainOptions,
} from "./train.ts";
