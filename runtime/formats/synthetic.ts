/**
 * `synthetic:<preset>` models: real shapes, seeded random weights, for benchmarks and tests
 * that need a model without a file. Matrices ~ N(0, 0.02²) (drawn from a fixed table of normal
 * samples so 135M values take well under a second), norms = 1.
 */
import { CONFIG_DEFAULTS, type LlamaConfig, type LlamaWeights } from "../model/weights.ts";
import { LAYER_TENSORS, layerTensorShape, product, validateConfig } from "../model/weights.ts";

const base = { ...CONFIG_DEFAULTS, tiedEmbeddings: true };

export const SYNTHETIC_PRESETS: Record<string, LlamaConfig> = {
  /** SmolLM-135M's shapes (HuggingFaceTB/SmolLM-135M). */
  "smollm-135m": {
    ...base,
    dim: 576,
    hiddenDim: 1536,
    nLayers: 30,
    nHeads: 9,
    nKvHeads: 3,
    vocabSize: 49152,
    seqLen: 2048,
  },
  /** stories260K's shapes. */
  "stories260k": {
    ...base,
    dim: 64,
    hiddenDim: 172,
    nLayers: 5,
    nHeads: 8,
    nKvHeads: 4,
    vocabSize: 512,
    seqLen: 512,
  },
  /** Small enough for unit tests. */
  tiny: {
    ...base,
    dim: 32,
    hiddenDim: 64,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    vocabSize: 64,
    seqLen: 128,
  },
};

/** The config of a preset; the error lists the presets. */
export function syntheticConfig(preset: string): LlamaConfig {
  const c = SYNTHETIC_PRESETS[preset.toLowerCase()];
  if (!c) {
    throw new Error(
      `unknown synthetic preset "${preset}"; known: ${Object.keys(SYNTHETIC_PRESETS).join(", ")}`,
    );
  }
  return { ...c };
}

/** Seeded random weights for a preset name or an explicit config. */
export function syntheticWeights(
  preset: string | LlamaConfig,
  seed = 0,
  std = 0.02,
): LlamaWeights {
  const config = typeof preset === "string" ? syntheticConfig(preset) : { ...preset };
  validateConfig(config, `synthetic model`);
  const draw = normalSource(seed, std);
  const matrix = (shape: number[]) => draw(new Float32Array(product(shape)));
  const ones = (n: number) => new Float32Array(n).fill(1);
  const tokenEmbedding = matrix([config.vocabSize, config.dim]);
  const layers = Array.from({ length: config.nLayers }, () => {
    const l = Object.fromEntries(
      LAYER_TENSORS.map((n) => {
        const shape = layerTensorShape(config, n);
        return [n, shape.length === 1 ? ones(shape[0]) : matrix(shape)];
      }),
    );
    return l as unknown as LlamaWeights["layers"][number];
  });
  const finalNorm = ones(config.dim);
  const lmHead = config.tiedEmbeddings ? tokenEmbedding : matrix([config.vocabSize, config.dim]);
  return { config, tokenEmbedding, layers, finalNorm, lmHead };
}

/**
 * Fills arrays with N(0, std²)-distributed values: a 64K table of Box–Muller samples indexed
 * by 16-bit halves of a mulberry32 stream (one PRNG step per two values).
 */
function normalSource(seed: number, std: number): (out: Float32Array) => Float32Array {
  let a = (seed ^ 0x9e3779b9) >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const table = new Float32Array(65536);
  for (let i = 0; i < table.length; i += 2) {
    const u1 = (next() + 1) / 4294967297, u2 = next() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1)) * std;
    table[i] = r * Math.cos(2 * Math.PI * u2);
    table[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return (out) => {
    const n = out.length;
    let i = 0;
    for (; i + 1 < n; i += 2) {
      const r = next();
      out[i] = table[r & 0xffff];
      out[i + 1] = table[r >>> 16];
    }
    if (i < n) out[i] = table[next() & 0xffff];
    return out;
  };
}
