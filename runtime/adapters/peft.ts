/**
 * LoRA adapters in Hugging Face PEFT format (DLORA.md §6): `adapter_config.json` plus
 * `adapter_model.safetensors` with keys
 * `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (r×in) and
 * `…lora_B.weight` (out×r). The engine keeps weights in the HF layout, so q/k `lora_B` rows
 * need no permutation here even for a llama2.c base. Host-agnostic: bytes in, bytes out.
 */
import { FormatError } from "../formats/errors.ts";
import { type FileSource } from "../formats/hf.ts";
import { parseSafetensors, tensorToF32, writeSafetensors } from "../formats/safetensors.ts";
import type { LlamaConfig } from "../model/weights.ts";
import { HF_PROJ, moduleKey, type Proj, projDims, PROJS } from "../model/modules.ts";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

export interface LoraModule {
  layer: number;
  proj: Proj;
  rank: number;
  /** ΔY = scale·(X·Aᵀ)·Bᵀ */
  scale: number;
  A: Float32Array; // rank × in
  B: Float32Array; // out × rank
}

export interface Adapter {
  rank: number;
  alpha: number;
  useRslora: boolean;
  dropout: number;
  targets: Proj[];
  baseModel: string;
  /** Keyed by moduleKey(layer, proj). */
  modules: Map<string, LoraModule>;
  /** Safetensors `__metadata__` (string → string), e.g. which modules were active. */
  metadata: Record<string, string>;
}

/** The scale PEFT applies: alpha/r, or alpha/√r with rsLoRA. */
export function loraScale(alpha: number, rank: number, useRslora = false): number {
  return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

export function peftTensorName(layer: number, proj: Proj, ab: "A" | "B"): string {
  return `base_model.model.model.layers.${layer}.${HF_PROJ[proj]}.lora_${ab}.weight`;
}

const HF_TO_PROJ = new Map<string, Proj>(PROJS.map((p) => [HF_PROJ[p].split(".")[1], p]));

export interface PeftWriteOptions {
  /** Extra keys for adapter_config.json (PEFT ignores keys it does not know). */
  extraConfig?: Record<string, unknown>;
}

/** Serialises an adapter as the two PEFT files (F32 weights). */
export function writePeftAdapter(
  adapter: Adapter,
  opts: PeftWriteOptions = {},
): Record<string, Uint8Array> {
  const tensors = new Map<string, { dtype: "F32"; shape: number[]; data: Float32Array }>();
  const ordered = [...adapter.modules.values()].sort((a, b) =>
    a.layer - b.layer || PROJS.indexOf(a.proj) - PROJS.indexOf(b.proj)
  );
  const rankPattern: Record<string, number> = {}, alphaPattern: Record<string, number> = {};
  for (const m of ordered) {
    const inDim = m.A.length / m.rank, outDim = m.B.length / m.rank;
    tensors.set(peftTensorName(m.layer, m.proj, "A"), {
      dtype: "F32",
      shape: [m.rank, inDim],
      data: m.A,
    });
    tensors.set(peftTensorName(m.layer, m.proj, "B"), {
      dtype: "F32",
      shape: [outDim, m.rank],
      data: m.B,
    });
    const name = `model.layers.${m.layer}.${HF_PROJ[m.proj]}`;
    if (m.rank !== adapter.rank) rankPattern[name] = m.rank;
    // PEFT's scale is lora_alpha / r (or / √r with rsLoRA) of the module's own r: a module whose
    // scale is not that gets its alpha in alpha_pattern.
    const root = adapter.useRslora ? Math.sqrt(m.rank) : m.rank;
    if (Math.abs(m.scale * root - adapter.alpha) > 1e-6 * Math.abs(adapter.alpha)) {
      alphaPattern[name] = m.scale * root;
    }
  }
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: adapter.baseModel,
    r: adapter.rank,
    lora_alpha: adapter.alpha,
    lora_dropout: adapter.dropout,
    target_modules: adapter.targets.map((p) => HF_PROJ[p].split(".")[1]),
    bias: "none",
    fan_in_fan_out: false,
    use_rslora: adapter.useRslora,
    use_dora: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    ...opts.extraConfig,
  };
  return {
    [ADAPTER_CONFIG]: new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"),
    [ADAPTER_WEIGHTS]: writeSafetensors(tensors, adapter.metadata),
  };
}

interface PeftConfig {
  r: number;
  alpha: number;
  useRslora: boolean;
  dropout: number;
  baseModel: string;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
}

function parseConfig(bytes: Uint8Array, file: string): PeftConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null) throw new FormatError(file, "not a JSON object");
  const c = raw as Record<string, unknown>;
  if (c.peft_type !== undefined && c.peft_type !== "LORA") {
    throw new FormatError(
      file,
      `peft_type is ${JSON.stringify(c.peft_type)}; only LORA is supported`,
    );
  }
  const num = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new FormatError(file, `${key} must be a number, got ${JSON.stringify(c[key])}`);
    }
    return v;
  };
  const r = num("r", 8);
  if (!Number.isInteger(r) || r < 1) {
    throw new FormatError(file, `r must be a positive integer, got ${r}`);
  }
  // Features that change the math must not be silently dropped.
  if (c.use_dora === true) {
    throw new FormatError(file, "use_dora is set; DoRA adapters are not supported");
  }
  if (c.fan_in_fan_out === true) {
    throw new FormatError(file, "fan_in_fan_out is set; Llama projections never use it");
  }
  if (c.bias !== undefined && c.bias !== "none") {
    throw new FormatError(file, `bias is ${JSON.stringify(c.bias)}; only "none" is supported`);
  }
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0) {
    throw new FormatError(file, `modules_to_save (${c.modules_to_save}) is not supported`);
  }
  const pattern = (key: string): Record<string, number> => {
    const v = c[key];
    if (v === undefined || v === null) return {};
    if (typeof v !== "object") throw new FormatError(file, `${key} must be an object`);
    return v as Record<string, number>;
  };
  return {
    r,
    alpha: num("lora_alpha", r),
    useRslora: c.use_rslora === true,
    dropout: typeof c.lora_dropout === "number" ? c.lora_dropout : 0,
    baseModel: typeof c.base_model_name_or_path === "string" ? c.base_model_name_or_path : "",
    rankPattern: pattern("rank_pattern"),
    alphaPattern: pattern("alpha_pattern"),
  };
}

/** PEFT matches pattern keys as a suffix of the module name. */
function patternValue(patterns: Record<string, number>, moduleName: string): number | undefined {
  for (const [key, value] of Object.entries(patterns)) {
    if (
      moduleName === key || moduleName.endsWith(`.${key}`) ||
      new RegExp(`(^|\\.)${key}$`).test(moduleName)
    ) {
      return value;
    }
  }
  return undefined;
}

const KEY = /(?:^|\.)layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.[\w-]+)?\.weight$/;

/**
 * Reads a PEFT adapter for a model with config `model`. Unknown config keys are ignored;
 * tensors for non-LoRA parts, wrong shapes, missing halves or NaNs are errors naming the
 * file and tensor.
 */
export async function readPeftAdapter(files: FileSource, model: LlamaConfig): Promise<Adapter> {
  const cfgFile = `${files.name}/${ADAPTER_CONFIG}`;
  const wFile = `${files.name}/${ADAPTER_WEIGHTS}`;
  if (!(await files.exists(ADAPTER_CONFIG))) {
    throw new FormatError(cfgFile, "missing: not a PEFT adapter directory");
  }
  if (!(await files.exists(ADAPTER_WEIGHTS))) {
    throw new FormatError(
      wFile,
      (await files.exists("adapter_model.bin"))
        ? "missing; only safetensors adapters are supported (adapter_model.bin is a pickle)"
        : "missing",
    );
  }
  const cfg = parseConfig(await files.read(ADAPTER_CONFIG), cfgFile);
  const st = parseSafetensors(await files.read(ADAPTER_WEIGHTS), wFile);
  const halves = new Map<
    string,
    {
      layer: number;
      proj: Proj;
      A?: Float32Array;
      B?: Float32Array;
      aShape?: number[];
      bShape?: number[];
    }
  >();
  for (const [name, t] of st.tensors) {
    const m = KEY.exec(name);
    if (!m) {
      throw new FormatError(
        wFile,
        `tensor ${name} is not a LoRA A/B weight of a Llama layer`,
        name,
      );
    }
    const layer = Number(m[1]);
    const proj = HF_TO_PROJ.get(m[3]);
    if (proj === undefined || HF_PROJ[proj].split(".")[0] !== m[2]) {
      throw new FormatError(wFile, `tensor ${name}: unknown projection ${m[2]}.${m[3]}`, name);
    }
    if (layer >= model.nLayers) {
      throw new FormatError(
        wFile,
        `tensor ${name}: layer ${layer} but the model has ${model.nLayers}`,
        name,
      );
    }
    const data = tensorToF32(t, name, wFile);
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) {
        throw new FormatError(wFile, `tensor ${name} has a non-finite value at ${i}`, name);
      }
    }
    const key = moduleKey(layer, proj);
    const entry = halves.get(key) ?? { layer, proj };
    if (m[4] === "A") {
      entry.A = data;
      entry.aShape = t.shape;
    } else {
      entry.B = data;
      entry.bShape = t.shape;
    }
    halves.set(key, entry);
  }
  const modules = new Map<string, LoraModule>();
  const targets = new Set<Proj>();
  for (const [key, e] of halves) {
    const name = peftTensorName(e.layer, e.proj, e.A ? "B" : "A");
    if (!e.A || !e.B || !e.aShape || !e.bShape) {
      throw new FormatError(
        wFile,
        `module ${key}: ${name} is missing (LoRA needs both A and B)`,
        name,
      );
    }
    const { inDim, outDim } = projDims(model, e.proj);
    const rank = e.aShape[0];
    const aName = peftTensorName(e.layer, e.proj, "A"),
      bName = peftTensorName(e.layer, e.proj, "B");
    if (e.aShape.length !== 2 || e.aShape[1] !== inDim) {
      throw new FormatError(
        wFile,
        `tensor ${aName} has shape [${e.aShape}], expected [r, ${inDim}]`,
        aName,
      );
    }
    if (e.bShape.length !== 2 || e.bShape[0] !== outDim || e.bShape[1] !== rank) {
      throw new FormatError(
        wFile,
        `tensor ${bName} has shape [${e.bShape}], expected [${outDim}, ${rank}]`,
        bName,
      );
    }
    const moduleName = `model.layers.${e.layer}.${HF_PROJ[e.proj]}`;
    const declared = patternValue(cfg.rankPattern, moduleName) ?? cfg.r;
    if (declared !== rank) {
      throw new FormatError(
        wFile,
        `tensor ${aName} has rank ${rank} but the config says ${declared}`,
        aName,
      );
    }
    const alpha = patternValue(cfg.alphaPattern, moduleName) ?? cfg.alpha;
    modules.set(key, {
      layer: e.layer,
      proj: e.proj,
      rank,
      scale: loraScale(alpha, rank, cfg.useRslora),
      A: e.A,
      B: e.B,
    });
    targets.add(e.proj);
  }
  if (modules.size === 0) throw new FormatError(wFile, "holds no LoRA weights");
  return {
    rank: cfg.r,
    alpha: cfg.alpha,
    useRslora: cfg.useRslora,
    dropout: cfg.dropout,
    targets: PROJS.filter((p) => targets.has(p)),
    baseModel: cfg.baseModel,
    modules,
    metadata: st.metadata,
  };
}
