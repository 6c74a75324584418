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
