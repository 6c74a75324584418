/**
 * DLoRA kernels: AssemblyScript → WebAssembly (SIMD, relaxed-SIMD FMA, optional
 * threads) and WGSL (WebGPU). Host-agnostic: runs in Deno, Node and browsers.
 */
export {
  type DType,
  type F32,
  Kernels,
  type LoadOptions,
  threadsAvailable,
  WasmArray,
  type WasmVariant,
} from "./core.ts";
export {
  type AdamWConfig,
  type AdamWState,
  adamwStep,
  clipGradNorm,
  type ClipOptions,
  sumSquares,
} from "./optim.ts";
export {
  bf16ToF32,
  CodecError,
  type CodecErrorReason,
  dequantizeInt8Rows,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  quantizeInt8Rows,
  topkDecode,
  type TopkDecodeOptions,
  topkEncode,
  topkEncodeWithFeedback,
  topkMaxBytes,
} from "./codec.ts";
export { gemmDyTX, gemmDyW, gemmFlops, type GemmOptions, gemmXWt } from "./gemm.ts";
export { rmsnormBackward, type RmsnormBackwardOptions, rmsnormForward } from "./norm.ts";
export { ropeBackward, ropeForward, type RopeShape, type RopeStyle, ropeTable } from "./rope.ts";
export {
  attentionBackward,
  attentionDecode,
  attentionForward,
  type AttentionShape,
  type CacheWriteShape,
  type DecodeShape,
  kvCacheWrite,
} from "./attention.ts";
export { swigluBackward, swigluForward } from "./mlp.ts";
export { embeddingBackward, embeddingForward } from "./embed.ts";
export {
  crossEntropyBackward,
  type CrossEntropyBackwardOptions,
  crossEntropyForward,
  type LossSummary,
  meanLoss,
} from "./xent.ts";
export {
  loraBackward,
  loraBackwardFlops,
  type LoraBackwardOptions,
  loraForward,
  loraForwardFlops,
  type LoraForwardOptions,
  type LoraGrads,
} from "./lora.ts";
export {
  AUTO_WEBGPU_MIN_FLOPS,
  type BackendChoice,
  type BackendLoraGrads,
  type BackendName,
  type BackendTensor,
  chooseBackend,
  type LinearBackend,
  type ProblemShape,
  selectBackend,
  type SelectOptions,
  wasmBackend,
  WasmTensor,
  webgpuBackend,
  WebGpuTensor,
} from "./backend.ts";
export {
  type AdapterSummary,
  Gpu,
  GpuTensor,
  probeAdapter,
  WebGpuUnavailableError,
} from "./webgpu/device.ts";
