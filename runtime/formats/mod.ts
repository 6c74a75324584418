/**
 * Model file formats → the canonical in-memory Llama model (runtime/model/weights.ts).
 * Host-agnostic: parsers take bytes or a FileSource; io.ts is the Deno edge (not re-exported).
 */
export { commas, FormatError } from "./errors.ts";
export { permuteHalfToInterleaved, permuteInterleavedToHalf } from "../model/weights.ts";
export type { LlamaConfig, LlamaLayer, LlamaWeights } from "../model/weights.ts";
export { parseLlama2c, writeLlama2c } from "./llama2c.ts";
export {
  parseSafetensors,
  type SafetensorsDType,
  type SafetensorsFile,
  type SafetensorsInput,
  type SafetensorsTensor,
  tensorToF32,
  writeSafetensors,
} from "./safetensors.ts";
export {
  type FileSource,
  hfConfigJson,
  hfTensorName,
  type HfWriteOptions,
  loadHfDirectory,
  memoryFiles,
  parseHfConfig,
  writeHfDirectory,
} from "./hf.ts";
export {
  dequantizeQ8_0,
  encodeGgmlTensor,
  encodeGguf,
  GGML_TYPES,
  GgmlType,
  type GgufFile,
  ggufTensorBytes,
  type GgufTensorInfo,
  ggufTensorToF32,
  GgufType,
  type GgufTyped,
  type GgufValue,
  parseGguf,
  quantizeQ8_0,
} from "./gguf.ts";
export {
  ggufLlamaConfig,
  ggufTensorName,
  type GgufTokenizer,
  ggufToLlama,
  type GgufWriteOptions,
  loadGgufLlama,
  writeGguf,
} from "./gguf_llama.ts";
export { SYNTHETIC_PRESETS, syntheticConfig, syntheticWeights } from "./synthetic.ts";
export {
  bf16BitsToF32,
  decodeBf16,
  decodeF16,
  encodeBf16,
  encodeF16,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "./half.ts";
