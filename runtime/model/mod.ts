/**
 * The Llama engine with LoRA: frozen weights and activations in wasm memory, the forward and
 * backward split into the U's three parts (DLORA.md §2), LoRA through hooks, generation.
 */
export {
  type BatchShape,
  type BlocksOptions,
  type ForwardOptions,
  KvCache,
  LlamaBlocks,
} from "./blocks.ts";
export {
  type EndsOptions,
  type HeadBackwardOptions,
  type HeadForwardOptions,
  LlamaEnds,
  type LogitPositions,
  type LossResult,
} from "./ends.ts";
export { type LoraHooks, PROJ_GROUPS, type ProjGrad, type ProjOutput } from "./hooks.ts";
export {
  LlamaModel,
  type LogitsOptions,
  type LossOptions,
  type ModelOptions,
  type TrainBatch,
  type TrainStepOptions,
  type TrainStepResult,
} from "./llama.ts";
export { LocalLora, type LoraOptimizerConfig, type LoraOptions, type LoraWeights } from "./lora.ts";
export {
  argmax,
  generate,
  type GenerateOptions,
  type GenerateResult,
  Sampler,
  type SamplingOptions,
} from "./generate.ts";
export { type ProfileEntry, StepProfile } from "./profile.ts";
export { HF_PROJ, moduleKey, parseTargets, type Proj, projDims, PROJS } from "./modules.ts";
export type { LlamaConfig, LlamaLayer, LlamaWeights } from "./weights.ts";
