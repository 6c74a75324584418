/**
 * GGUF ↔ the canonical Llama model. llama.cpp stores q/k rows interleaved (as llama2.c does),
 * so reading permutes them into the rotate-half (HF) order and writing permutes them back.
 * A converted file can carry its tokenizer (`tokenizer.ggml.*` keys).
 */
import {
  CONFIG_DEFAULTS,
  firstNonFinite,
  headSize,
  LAYER_TENSORS,
  type LayerTensorName,
  layerTensorShape,
  type LlamaConfig,
  type LlamaLayer,
  type LlamaWeights,
  permuteHalfToInterleaved,
  permuteInterleavedToHalf,
  validateConfig,
} from "../model/weights.ts";
import { checkConfig, checkWeights, FormatError } from "./errors.ts";
import {
  encodeGgmlTensor,
  encodeGguf,
  GgmlType,
  type GgmlTypeName,
  type GgufFile,
  type GgufTensorInput,
  ggufTensorToF32,
  GgufType,
  type GgufTyped,
  type GgufValue,
  parseGguf,
} from "./gguf.ts";

const GGUF_LAYER: Record<LayerTensorName, string> = {
  attnNorm: "attn_norm",
  wq: "attn_q",
  wk: "attn_k",
  wv: "attn_v",
  wo: "attn_output",
  ffnNorm: "ffn_norm",
  gate: "ffn_gate",
  down: "ffn_down",
  up: "ffn_up",
};

/** GGUF tensor name of a canonical field; layer -1 for the tensors outside the blocks. */
export function ggufTensorName(layer: number, field: string): string {
  if (layer >= 0) return `blk.${layer}.${GGUF_LAYER[field as LayerTensorName]}.weight`;
  const top: Record<string, string> = {
    tokenEmbedding: "token_embd.weight",
    finalNorm: "output_norm.weight",
    lmHead: "output.weight",
  };
  return top[field] ?? field;
}

/** Parses a GGUF file and converts it (llama architecture) to the canonical model. */
export function loadGgufLlama(bytes: Uint8Array | ArrayBuffer, name = "model.gguf"): LlamaWeights {
  return ggufToLlama(parseGguf(bytes, name));
}

/** The llama hyper-parameters of a parsed GGUF file. */
export function ggufLlamaConfig(file: GgufFile): LlamaConfig {
  const m = file.metadata;
  const fail = (problem: string): never => {
    throw new FormatError(file.name, problem);
  };
  const arch = m.get("general.architecture");
  if (arch !== "llama") {
    fail(
      arch === undefined
        ? "general.architecture is missing"
        : `general.architecture is ${JSON.stringify(arch)}; only "llama" models load`,
    );
  }
  const num = (key: string, fallback?: number): number => {
    const v = m.get(key) ?? fallback;
    if (v === undefined) return fail(`metadata ${key} is missing`);
    if (typeof v !== "number") return fail(`metadata ${key} is not a number: ${String(v)}`);
    return v;
  };
  const tokens = m.get("tokenizer.ggml.tokens");
  const embd = file.tensors.find((t) => t.name === "token_embd.weight");
  const vocabFallback = Array.isArray(tokens) ? tokens.length : embd?.dims[1];
  const nHeads = num("llama.attention.head_count");
  const config: LlamaConfig = {
    dim: num("llama.embedding_length"),
    hiddenDim: num("llama.feed_forward_length"),
    nLayers: num("llama.block_count"),
    nHeads,
    nKvHeads: num("llama.attention.head_count_kv", nHeads),
    vocabSize: num("llama.vocab_size", vocabFallback),
    seqLen: num("llama.context_length", 2048),
    normEps: num("llama.attention.layer_norm_rms_epsilon", CONFIG_DEFAULTS.normEps),
    ropeTheta: num("llama.rope.freq_base", CONFIG_DEFAULTS.ropeTheta),
    tiedEmbeddings: !file.tensors.some((t) => t.name === "output.weight"),
    bosId: num("tokenizer.ggml.bos_token_id", CONFIG_DEFAULTS.bosId),
    eosId: num("tokenizer.ggml.eos_token_id", CONFIG_DEFAULTS.eosId),
  };
  checkConfig(config, file.name, "llama metadata");
  const ropeDims = m.get("llama.rope.dimension_count");
  if (ropeDims !== undefined && ropeDims !== headSize(config)) {
    fail(`llama.rope.dimension_count ${ropeDims} differs from the head size ${headSize(config)}`);
  }
  if (m.has("llama.rope.scaling.type") && m.get("llama.rope.scaling.type") !== "none") {
    fail(`llama.rope.scaling.type ${m.get("llama.rope.scaling.type")} is not supported`);
  }
  return config;
}

/** Converts a parsed llama GGUF to the canonical model (dequantizing as needed). */
export function ggufToLlama(file: GgufFile): LlamaWeights {
  const config = ggufLlamaConfig(file);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const load = (tensor: string, rowMajor: number[]): Float32Array => {
    const t = byName.get(tensor);
    if (!t) throw new FormatError(file.name, `missing tensor ${tensor}`, tensor);
    const dims = [...rowMajor].reverse();
    if (t.dims.join() !== dims.join()) {
      throw new FormatError(
        file.name,
        `tensor ${tensor} has dims [${t.dims.join(", ")}], the llama metadata implies [${
          dims.join(", ")
        }] (ggml order)`,
        tensor,
      );
    }
    const data = ggufTensorToF32(file, t);
    const bad = firstNonFinite(data);
    if (bad) {
      throw new FormatError(
        file.name,
        `tensor ${tensor} has a non-finite value (${bad.value}) at index ${bad.index}`,
        tensor,
      );
    }
    return data;
  };
  const c = config, hs = headSize(c);
  const tokenEmbedding = load(ggufTensorName(-1, "tokenEmbedding"), [c.vocabSize, c.dim]);
  const layers: LlamaLayer[] = [];
  for (let i = 0; i < c.nLayers; i++) {
    const layer = {} as LlamaLayer;
    for (const f of LAYER_TENSORS) layer[f] = load(ggufTensorName(i, f), layerTensorShape(c, f));
    layer.wq = permuteInterleavedToHalf(layer.wq, c.nHeads, hs, c.dim);
    layer.wk = permuteInterleavedToHalf(layer.wk, c.nKvHeads, hs, c.dim);
    layers.push(layer);
  }
  const finalNorm = load(ggufTensorName(-1, "finalNorm"), [c.dim]);
  const lmHead = c.tiedEmbeddings
    ? tokenEmbedding
    : load(ggufTensorName(-1, "lmHead"), [c.vocabSize, c.dim]);
  return checkWeights(
    { config, tokenEmbedding, layers, finalNorm, lmHead },
    file.name,
    ggufTensorName,
  );
}

/** A tokenizer to embed, in llama.cpp's `tokenizer.ggml.*` terms. */
export interface GgufTokenizer {
  /** "llama" (SentencePiece), "gpt2" (byte-level BPE), ... */
  model: string;
  tokens: string[];
  scores?: ArrayLike<number>;
  /** llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
  tokenTypes?: ArrayLike<number>;
  merges?: string[];
  bosId?: number;
  eosId?: number;
  unknownId?: number;
  paddingId?: number;
  addBos?: boolean;
  addEos?: boolean;
}

export interface GgufWriteOptions {
  /** Weight matrices as F32 (default), F16, BF16 or Q8_0; norms always stay F32. */
  type?: "F32" | "F16" | "BF16" | "Q8_0";
  tokenizer?: GgufTokenizer;
  /** More metadata (e.g. the `tokenizer.*` entries of another GGUF), with its stored types. */
  extraMetadata?: Map<string, GgufValue>;
  extraTypes?: Map<string, GgufTyped>;
  /** general.name */
  modelName?: string;
}

const FILE_TYPE = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 } as const; // llama_ftype "mostly X"

/**
 * Serializes the canonical model as a llama GGUF (version 3). A matrix whose rows do not fit
 * Q8_0 blocks of 32 is written F32, as llama.cpp's quantizer falls back too.
 */
export function writeGguf(w: LlamaWeights, opts: GgufWriteOptions = {}): Uint8Array {
  const c = w.config, hs = headSize(c), type = opts.type ?? "F32";
  validateConfig(c, "writeGguf");
  const meta = new Map<string, GgufValue>();
  const types = new Map<string, GgufTyped>();
  const set = (key: string, value: GgufValue, t?: number) => {
    meta.set(key, value);
    if (t !== undefined) types.set(key, { type: t as GgufTyped["type"] });
  };
  const U32 = GgufType.UINT32, F32 = GgufType.FLOAT32;
  set("general.architecture", "llama");
  set("general.name", opts.modelName ?? "dlora");
  set("general.file_type", FILE_TYPE[type], U32);
  if (type === "Q8_0") set("general.quantization_version", 2, U32);
  set("llama.vocab_size", c.vocabSize, U32);
  set("llama.context_length", c.seqLen, U32);
  set("llama.embedding_length", c.dim, U32);
  set("llama.block_count", c.nLayers, U32);
  set("llama.feed_forward_length", c.hiddenDim, U32);
  set("llama.rope.dimension_count", hs, U32);
  set("llama.rope.freq_base", c.ropeTheta, F32);
  set("llama.attention.head_count", c.nHeads, U32);
  set("llama.attention.head_count_kv", c.nKvHeads, U32);
  set("llama.attention.layer_norm_rms_epsilon", c.normEps, F32);
  const tok = opts.tokenizer;
  if (tok) {
    if (tok.tokens.length !== c.vocabSize) {
      throw new Error(
        `writeGguf: the tokenizer has ${tok.tokens.length} tokens, the model's vocabulary ${c.vocabSize}`,
      );
    }
    set("tokenizer.ggml.model", tok.model);
    set("tokenizer.ggml.tokens", tok.tokens);
    if (tok.scores) set("tokenizer.ggml.scores", Float32Array.from(tok.scores));
    if (tok.tokenTypes) set("tokenizer.ggml.token_type", Int32Array.from(tok.tokenTypes));
    if (tok.merges) set("tokenizer.ggml.merges", tok.merges);
    set("tokenizer.ggml.bos_token_id", tok.bosId ?? c.bosId, U32);
    set("tokenizer.ggml.eos_token_id", tok.eosId ?? c.eosId, U32);
    if (tok.unknownId !== undefined) set("tokenizer.ggml.unknown_token_id", tok.unknownId, U32);
    if (tok.paddingId !== undefined) set("tokenizer.ggml.padding_token_id", tok.paddingId, U32);
    if (tok.addBos !== undefined) set("tokenizer.ggml.add_bos_token", tok.addBos);
    if (tok.addEos !== undefined) set("tokenizer.ggml.add_eos_token", tok.addEos);
  }
  for (const [k, v] of opts.extraMetadata ?? []) {
    meta.set(k, v);
    const t = opts.extraTypes?.get(k);
    if (t) types.set(k, t);
  }
  if (!tok && !meta.has("tokenizer.ggml.bos_token_id")) {
    set("tokenizer.ggml.bos_token_id", c.bosId, U32);
    set("tokenizer.ggml.eos_token_id", c.eosId, U32);
  }

  const tensors: GgufTensorInput[] = [];
  const add = (name: string, data: Float32Array, rowMajor: number[]) => {
    // Vectors (norms) stay F32; matrices take the requested type when their rows fit it.
    const t: GgmlTypeName = rowMajor.length === 1 || (type === "Q8_0" && rowMajor[1] % 32 !== 0)
      ? "F32"
      : type;
    tensors.push({
      name,
      dims: [...rowMajor].reverse(),
      type: GgmlType[t],
      data: encodeGgmlTensor(data, t),
    });
  };
  add(ggufTensorName(-1, "tokenEmbedding"), w.tokenEmbedding, [c.vocabSize, c.dim]);
  w.layers.forEach((l, i) => {
    for (const f of LAYER_TENSORS) {
      let data = l[f];
      if (f === "wq") data = permuteHalfToInterleaved(data, c.nHeads, hs, c.dim);
      if (f === "wk") data = permuteHalfToInterleaved(data, c.nKvHeads, hs, c.dim);
      add(ggufTensorName(i, f), data, layerTensorShape(c, f));
    }
  });
  add(ggufTensorName(-1, "finalNorm"), w.finalNorm, [c.dim]);
  if (!c.tiedEmbeddings) add(ggufTensorName(-1, "lmHead"), w.lmHead, [c.vocabSize, c.dim]);
  return encodeGguf({ metadata: meta, types, tensors });
}
