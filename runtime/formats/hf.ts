/**
 * Hugging Face Llama directories: `config.json` (LlamaForCausalLM) plus `model.safetensors` or
 * shards listed in `model.safetensors.index.json`. Weights may be F32, F16 or BF16; q/k rows
 * are already in the canonical rotate-half order, so nothing is permuted.
 * File access goes through a FileSource so the same code runs on any host (io.ts has Deno's).
 */
import {
  CONFIG_DEFAULTS,
  firstNonFinite,
  LAYER_TENSORS,
  type LayerTensorName,
  layerTensorShape,
  type LlamaConfig,
  type LlamaLayer,
  type LlamaWeights,
  validateConfig,
} from "../model/weights.ts";
import { checkConfig, checkWeights, FormatError } from "./errors.ts";
import {
  parseSafetensors,
  type SafetensorsFile,
  type SafetensorsInput,
  tensorToF32,
  writeSafetensors,
} from "./safetensors.ts";

/** Read access to the files of one directory (or archive, or upload) by relative name. */
export interface FileSource {
  /** Where the files are, for messages: "models/smol" → "models/smol/config.json: ...". */
  readonly name: string;
  read(file: string): Promise<Uint8Array>;
  exists(file: string): Promise<boolean>;
}

/** A FileSource over in-memory files (tests, conversions, browser uploads). */
export function memoryFiles(files: Record<string, Uint8Array>, name = "memory"): FileSource {
  return {
    name,
    read: (file) => {
      const f = files[file];
      return f ? Promise.resolve(f) : Promise.reject(new Error(`${name}/${file}: no such file`));
    },
    exists: (file) => Promise.resolve(file in files),
  };
}

const HF_LAYER: Record<LayerTensorName, string> = {
  attnNorm: "input_layernorm",
  wq: "self_attn.q_proj",
  wk: "self_attn.k_proj",
  wv: "self_attn.v_proj",
  wo: "self_attn.o_proj",
  ffnNorm: "post_attention_layernorm",
  gate: "mlp.gate_proj",
  down: "mlp.down_proj",
  up: "mlp.up_proj",
};

/** HF tensor name of a canonical field; layer -1 for the tensors outside the blocks. */
export function hfTensorName(layer: number, field: string): string {
  if (layer >= 0) return `model.layers.${layer}.${HF_LAYER[field as LayerTensorName]}.weight`;
  const top: Record<string, string> = {
    tokenEmbedding: "model.embed_tokens.weight",
    finalNorm: "model.norm.weight",
    lmHead: "lm_head.weight",
  };
  return top[field] ?? field;
}

const INDEX = "model.safetensors.index.json";
const SINGLE = "model.safetensors";

/** Loads a Hugging Face Llama directory into the canonical in-memory model. */
export async function loadHfDirectory(files: FileSource): Promise<LlamaWeights> {
  const at = (file: string) => `${files.name}/${file}`;
  if (!(await files.exists("config.json"))) {
    throw new FormatError(at("config.json"), "missing: a Hugging Face model directory needs it");
  }
  const config = parseHfConfig(await files.read("config.json"), at("config.json"));

  // Which file holds each tensor, and a parse cache so each shard is read once.
  let whereIs: (tensor: string) => string;
  if (await files.exists(INDEX)) {
    const weightMap = parseIndex(await files.read(INDEX), at(INDEX));
    whereIs = (tensor) => {
      const file = weightMap[tensor];
      if (!file) throw new FormatError(at(INDEX), `weight_map has no tensor ${tensor}`, tensor);
      return file;
    };
  } else if (await files.exists(SINGLE)) {
    whereIs = () => SINGLE;
  } else {
    throw new FormatError(files.name, `neither ${SINGLE} nor ${INDEX} is there`);
  }
  const shards = new Map<string, Promise<SafetensorsFile>>();
  const shard = (file: string) => {
    let s = shards.get(file);
    if (!s) {
      s = files.read(file).then((bytes) => parseSafetensors(bytes, at(file)));
      shards.set(file, s);
    }
    return s;
  };
  const load = async (tensor: string, shape: number[]): Promise<Float32Array> => {
    const file = whereIs(tensor);
    const t = (await shard(file)).tensors.get(tensor);
    if (!t) throw new FormatError(at(file), `missing tensor ${tensor}`, tensor);
    if (t.shape.join() !== shape.join()) {
      throw new FormatError(
        at(file),
        `tensor ${tensor} has shape [${t.shape.join(", ")}], config.json implies [${
          shape.join(", ")
        }]`,
        tensor,
      );
    }
    const data = tensorToF32(t, tensor, at(file));
    const bad = firstNonFinite(data);
    if (bad) {
      throw new FormatError(
        at(file),
        `tensor ${tensor} has a non-finite value (${bad.value}) at index ${bad.index}`,
        tensor,
      );
    }
    return data;
  };

  const D = config.dim, V = config.vocabSize;
  const tokenEmbedding = await load(hfTensorName(-1, "tokenEmbedding"), [V, D]);
  const layers: LlamaLayer[] = [];
  for (let i = 0; i < config.nLayers; i++) {
    const layer = {} as LlamaLayer;
    for (const f of LAYER_TENSORS) {
      layer[f] = await load(hfTensorName(i, f), layerTensorShape(config, f));
    }
    layers.push(layer);
  }
  const finalNorm = await load(hfTensorName(-1, "finalNorm"), [D]);
  const lmHead = config.tiedEmbeddings
    ? tokenEmbedding
    : await load(hfTensorName(-1, "lmHead"), [V, D]);
  // A bias would be silently dropped: refuse instead (Llama has none; Qwen2-style models do).
  for (const [file, parsed] of shards) {
    for (const tensor of (await parsed).tensors.keys()) {
      if (tensor.endsWith(".bias")) {
        throw new FormatError(at(file), `tensor ${tensor}: biases are not supported`, tensor);
      }
    }
  }
  return checkWeights(
    { config, tokenEmbedding, layers, finalNorm, lmHead },
    files.name,
    hfTensorName,
  );
}

/** config.json → LlamaConfig, with LlamaConfig's own defaults for absent fields. */
export function parseHfConfig(bytes: Uint8Array, file = "config.json"): LlamaConfig {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  const fail = (problem: string): never => {
    throw new FormatError(file, problem);
  };
  if (typeof j !== "object" || j === null) fail("not a JSON object");
  const archs = j.architectures as unknown[] | undefined;
  if (j.model_type !== undefined && j.model_type !== "llama") {
    fail(`model_type is ${JSON.stringify(j.model_type)}; only Llama models are supported`);
  }
  if (Array.isArray(archs) && !archs.includes("LlamaForCausalLM")) {
    fail(`architectures ${JSON.stringify(archs)} do not include LlamaForCausalLM`);
  }
  if (j.hidden_act !== undefined && j.hidden_act !== "silu") {
    fail(`hidden_act ${JSON.stringify(j.hidden_act)} is not supported (Llama uses silu)`);
  }
  if (j.rope_scaling !== undefined && j.rope_scaling !== null) {
    fail(`rope_scaling ${JSON.stringify(j.rope_scaling)} is not supported`);
  }
  for (const k of ["attention_bias", "mlp_bias"]) if (j[k] === true) fail(`${k} is not supported`);
  const int = (key: string, fallback?: number): number => {
    const v = j[key] ?? fallback;
    if (typeof v !== "number" || !Number.isSafeInteger(v)) {
      return fail(v === undefined ? `missing ${key}` : `${key} is not an integer: ${v}`);
    }
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = j[key] ?? fallback;
    return typeof v === "number" ? v : fail(`${key} is not a number: ${JSON.stringify(v)}`);
  };
  const tokenId = (key: string, fallback: number): number => {
    const v = j[key];
    if (v === undefined || v === null) return fallback;
    if (Array.isArray(v)) return typeof v[0] === "number" ? v[0] : fallback; // several eos ids
    return typeof v === "number" ? v : fail(`${key} is not a token id: ${JSON.stringify(v)}`);
  };
  const nHeads = int("num_attention_heads");
  const config: LlamaConfig = {
    dim: int("hidden_size"),
    hiddenDim: int("intermediate_size"),
    nLayers: int("num_hidden_layers"),
    nHeads,
    nKvHeads: int("num_key_value_heads", nHeads),
    vocabSize: int("vocab_size"),
    seqLen: int("max_position_embeddings", 2048),
    normEps: num("rms_norm_eps", 1e-6),
    ropeTheta: num("rope_theta", CONFIG_DEFAULTS.ropeTheta),
    tiedEmbeddings: j.tie_word_embeddings === true,
    bosId: tokenId("bos_token_id", CONFIG_DEFAULTS.bosId),
    eosId: tokenId("eos_token_id", CONFIG_DEFAULTS.eosId),
  };
  if (j.head_dim !== undefined && j.head_dim !== null && j.head_dim !== config.dim / nHeads) {
    fail(
      `head_dim ${j.head_dim} differs from hidden_size/num_attention_heads = ${
        config.dim / nHeads
      }; not supported`,
    );
  }
  checkConfig(config, file, "config");
  return config;
}

function parseIndex(bytes: Uint8Array, file: string): Record<string, string> {
  let j: { weight_map?: unknown };
  try {
    j = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  const map = j?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new FormatError(file, "weight_map is missing or not an object");
  }
  for (const [k, v] of Object.entries(map)) {
    if (typeof v !== "string" || v.includes("/") || v.includes("\\") || v.startsWith(".")) {
      throw new FormatError(
        file,
        `weight_map[${k}] is not a shard file name: ${JSON.stringify(v)}`,
      );
    }
  }
  return map as Record<string, string>;
}

/** LlamaConfig → config.json as transformers writes it for LlamaForCausalLM. */
export function hfConfigJson(c: LlamaConfig, dtype: "F32" | "F16" | "BF16" = "F32"): string {
  const torchDtype = { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype];
  return JSON.stringify(
    {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: c.dim,
      intermediate_size: c.hiddenDim,
      num_hidden_layers: c.nLayers,
      num_attention_heads: c.nHeads,
      num_key_value_heads: c.nKvHeads,
      head_dim: c.dim / c.nHeads,
      vocab_size: c.vocabSize,
      max_position_embeddings: c.seqLen,
      rms_norm_eps: c.normEps,
      rope_theta: c.ropeTheta,
      rope_scaling: null,
      tie_word_embeddings: c.tiedEmbeddings,
      bos_token_id: c.bosId,
      eos_token_id: c.eosId,
      hidden_act: "silu",
      attention_bias: false,
      mlp_bias: false,
      torch_dtype: torchDtype,
    },
    null,
    2,
  ) + "\n";
}

export interface HfWriteOptions {
  /** Encoding of the weights (default F32). */
  dtype?: "F32" | "F16" | "BF16";
  /** Split into shards of at most this many bytes (a bigger single tensor gets its own). */
  shardBytes?: number;
}

/**
 * The files of a Hugging Face directory for `w`: config.json and model.safetensors, or
 * model-0000k-of-0000n.safetensors shards with model.safetensors.index.json.
 */
export function writeHfDirectory(
  w: LlamaWeights,
  opts: HfWriteOptions = {},
): Record<string, Uint8Array> {
  const c = w.config, dtype = opts.dtype ?? "F32";
  validateConfig(c, "writeHfDirectory");
  const bytesPer = dtype === "F32" ? 4 : 2;
  const tensors: [string, SafetensorsInput][] = [];
  const add = (name: string, data: Float32Array, shape: number[]) =>
    tensors.push([name, { dtype, shape, data }]);
  add(hfTensorName(-1, "tokenEmbedding"), w.tokenEmbedding, [c.vocabSize, c.dim]);
  w.layers.forEach((l, i) => {
    for (const f of LAYER_TENSORS) add(hfTensorName(i, f), l[f], layerTensorShape(c, f));
  });
  add(hfTensorName(-1, "finalNorm"), w.finalNorm, [c.dim]);
  if (!c.tiedEmbeddings) add(hfTensorName(-1, "lmHead"), w.lmHead, [c.vocabSize, c.dim]);

  const groups: [string, SafetensorsInput][][] = [[]];
  let size = 0;
  for (const t of tensors) {
    const b = t[1].data.length * bytesPer;
    if (opts.shardBytes && size > 0 && size + b > opts.shardBytes) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(t);
    size += b;
  }
  const meta = { format: "pt" };
  const out: Record<string, Uint8Array> = {
    "config.json": new TextEncoder().encode(hfConfigJson(c, dtype)),
  };
  if (groups.length === 1) {
    out[SINGLE] = writeSafetensors(new Map(groups[0]), meta);
    return out;
  }
  const pad = (k: number) => String(k).padStart(5, "0");
  const weightMap: Record<string, string> = {};
  let total = 0;
  groups.forEach((g, k) => {
    const file = `model-${pad(k + 1)}-of-${pad(groups.length)}.safetensors`;
    out[file] = writeSafetensors(new Map(g), meta);
    for (const [name, t] of g) {
      weightMap[name] = file;
      total += t.data.length * bytesPer;
    }
  });
  out[INDEX] = new TextEncoder().encode(
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n",
  );
  return out;
}
