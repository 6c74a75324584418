/**
 * LocalLora ⇄ PEFT `Adapter` (runtime/adapters/peft.ts). The engine keeps every weight in the
 * Hugging Face layout (q/k rows in rotate-half order, even for a llama2.c base), so lora_B of q
 * and k is exported and imported as is: no row permutation.
 */
import type { Kernels } from "../../kernels/mod.ts";
import type { Adapter, LoraModule } from "../adapters/peft.ts";
import { LocalLora } from "../model/lora.ts";
import { PROJS } from "../model/modules.ts";
import type { LlamaConfig } from "../model/weights.ts";

/** Safetensors metadata key listing the modules that were active ("0.q,0.k,…"). */
export const ACTIVE_MODULES_KEY = "dlora_active_modules";

export interface ToAdapterOptions {
  /** adapter_config.json's base_model_name_or_path. */
  baseModel: string;
  /** Modules to write: the active ones (default) or all. */
  which?: "active" | "all";
  /** Extra safetensors metadata. */
  metadata?: Record<string, string>;
}

/** The modules of `lora` as a PEFT adapter (copies of A and B). */
export function loraToAdapter(lora: LocalLora, opts: ToAdapterOptions): Adapter {
  const modules = new Map<string, LoraModule>();
  for (const [key, w] of lora.exportWeights(opts.which ?? "active")) {
    const [layer, proj] = key.split(".");
    modules.set(key, {
      layer: Number(layer),
      proj: proj as LoraModule["proj"],
      // A module grown by Kill and Revive keeps s = alpha / (the LoRA's rank): rank_pattern and
      // alpha_pattern carry both.
      rank: lora.rankOf(Number(layer), proj as LoraModule["proj"]),
      scale: lora.scale,
      A: w.A,
      B: w.B,
    });
  }
  return {
    rank: lora.rank,
    alpha: lora.alpha,
    useRslora: false,
    dropout: lora.dropout,
    targets: [...lora.targets],
    baseModel: opts.baseModel,
    modules,
    // "format": "pt" is what PEFT's own save writes; some loaders check it.
    metadata: { format: "pt", [ACTIVE_MODULES_KEY]: lora.activeKeys().join(","), ...opts.metadata },
  };
}

/**
 * A LocalLora holding `adapter`'s modules, exactly those active. When every module has the
 * same rank and scale they are used as they are; otherwise (PEFT rank_pattern / alpha_pattern)
 * each module is zero-padded to the largest rank and its scale folded into B, which computes
 * the same ΔY = s·(X·Aᵀ)·Bᵀ up to float rounding (fine for eval and generation; training such an
 * import would not follow PEFT's per-module scales).
 */
export function loraFromAdapter(k: Kernels, config: LlamaConfig, adapter: Adapter): LocalLora {
  const mods = [...adapter.modules.values()];
  if (mods.length === 0) throw new Error("adapter holds no LoRA modules");
  const uniform = mods.every((m) => m.rank === mods[0].rank && m.scale === mods[0].scale);
  const rank = uniform ? mods[0].rank : Math.max(...mods.map((m) => m.rank));
  const scale = uniform ? mods[0].scale : 1;
  const targets = PROJS.filter((p) => mods.some((m) => m.proj === p));
  const lora = new LocalLora(k, config, {
    rank,
    alpha: scale * rank,
    targets,
    dropout: 0,
  });
  lora.training = false;
  const weights = new Map<string, { A: Float32Array; B: Float32Array }>();
  for (const [key, m] of adapter.modules) {
    if (uniform) {
      weights.set(key, { A: m.A, B: m.B });
      continue;
    }
    const inDim = m.A.length / m.rank, outDim = m.B.length / m.rank, fold = m.scale / scale;
    const A = new Float32Array(rank * inDim), B = new Float32Array(outDim * rank);
    A.set(m.A); // rows beyond m.rank stay 0
    for (let o = 0; o < outDim; o++) {
      for (let j = 0; j < m.rank; j++) B[o * rank + j] = m.B[o * m.rank + j] * fold;
    }
    weights.set(key, { A, B });
  }
  try {
    lora.importWeights(weights);
  } catch (e) {
    lora.free();
    throw e;
  }
  lora.setActiveKeys(adapter.modules.keys());
  return lora;
}
