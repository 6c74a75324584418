// Entry point of the kernel module: one export list for every family.
// Each family lives in its own file with forward and backward side by side.

/** First free byte after static data; the host allocator starts here. */
export function heapBase(): usize {
  return __heap_base;
}

/** 1 when built with relaxed SIMD (fused multiply-add), else 0. */
export function hasRelaxedSimd(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

export * from "./util";
export { gemm_dytx, gemm_dyw, gemm_scratch_bytes, gemm_xwt } from "./gemm";
export * from "./lora";
export * from "./optim";
export * from "./codec";
export { vexp } from "./vmath";
export * from "./norm";
export * from "./rope";
export * from "./attention";
export * from "./mlp";
export * from "./embed";
export * from "./xent";
