/**
 * The in-memory Llama model every format loads into, and the one layout convention they share.
 *
 * CANONICAL LAYOUT: row-major f32, every projection stored as nn.Linear stores it (out × in),
 * and q/k rows in the Hugging Face order (laid out for rotate-half RoPE). Formats that keep
 * q/k rows interleaved (llama2.c, GGUF) permute on read and un-permute on write.
 * Host-agnostic: no Deno API.
 */

/** Shapes and hyper-parameters of a Llama-family model. hs = dim / nHeads throughout. */
export interface LlamaConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  normEps: number;
  ropeTheta: number;
  /** When true, `lmHead` is the same Float32Array object as `tokenEmbedding`. */
  tiedEmbeddings: boolean;
  bosId: number;
  eosId: number;
}

/** One transformer block. D = dim, H = hiddenDim, NH/NKV = heads, hs = head size. */
export interface LlamaLayer {
  attnNorm: Float32Array; // (D)
  wq: Float32Array; // (NH·hs, D), HF row order
  wk: Float32Array; // (NKV·hs, D), HF row order
  wv: Float32Array; // (NKV·hs, D)
  wo: Float32Array; // (D, NH·hs)
  ffnNorm: Float32Array; // (D)
  gate: Float32Array; // (H, D)   llama2.c w1
  down: Float32Array; // (D, H)   llama2.c w2
  up: Float32Array; // (H, D)     llama2.c w3
}

export interface LlamaWeights {
  config: LlamaConfig;
  tokenEmbedding: Float32Array; // (V, D)
  layers: LlamaLayer[];
  finalNorm: Float32Array; // (D)
  lmHead: Float32Array; // (V, D)
}

export const LAYER_TENSORS = [
  "attnNorm",
  "wq",
  "wk",
  "wv",
  "wo",
  "ffnNorm",
  "gate",
  "down",
  "up",
] as const;
export type LayerTensorName = typeof LAYER_TENSORS[number];

/** Defaults of the fields a format may not carry. */
export const CONFIG_DEFAULTS = { normEps: 1e-5, ropeTheta: 10000, bosId: 1, eosId: 2 } as const;

export function headSize(c: LlamaConfig): number {
  return c.dim / c.nHeads;
}

/** Row-major shape of one layer tensor, [rows, cols] or [n]. */
export function layerTensorShape(c: LlamaConfig, name: LayerTensorName): number[] {
  const hs = headSize(c), D = c.dim, H = c.hiddenDim;
  switch (name) {
    case "attnNorm":
    case "ffnNorm":
      return [D];
    case "wq":
      return [c.nHeads * hs, D];
    case "wk":
    case "wv":
      return [c.nKvHeads * hs, D];
    case "wo":
      return [D, c.nHeads * hs];
    case "gate":
    case "up":
      return [H, D];
    case "down":
      return [D, H];
  }
}

/** Number of parameters, counting a tied head once. */
export function parameterCount(c: LlamaConfig): number {
  const perLayer = LAYER_TENSORS.reduce((s, n) => s + product(layerTensorShape(c, n)), 0);
  return c.vocabSize * c.dim * (c.tiedEmbeddings ? 1 : 2) + c.nLayers * perLayer + c.dim;
}

export function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * What is wrong with a config, or null when it describes a buildable model
 * (e.g. "dim 100 is not divisible by nHeads 3").
 */
export function configProblem(c: LlamaConfig): string | null {
  const ints = [
    "dim",
    "hiddenDim",
    "nLayers",
    "nHeads",
    "nKvHeads",
    "vocabSize",
    "seqLen",
  ] as const;
  for (const k of ints) {
    const v = c[k];
    if (!Number.isSafeInteger(v) || v <= 0) return `${k} must be a positive integer, got ${v}`;
  }
  if (c.dim % c.nHeads !== 0) return `dim ${c.dim} is not divisible by nHeads ${c.nHeads}`;
  if (c.nHeads % c.nKvHeads !== 0) {
    return `nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`;
  }
  if (headSize(c) % 2 !== 0) return `head size ${headSize(c)} is odd; RoPE needs pairs`;
  if (!(c.normEps > 0 && c.normEps < 1)) return `normEps must be in (0, 1), got ${c.normEps}`;
  if (!(c.ropeTheta > 0 && Number.isFinite(c.ropeTheta))) {
    return `ropeTheta must be positive, got ${c.ropeTheta}`;
  }
  for (const k of ["bosId", "eosId"] as const) {
    const v = c[k];
    if (!Number.isSafeInteger(v) || v < -1 || v >= c.vocabSize) {
      return `${k} ${v} is outside the vocabulary (size ${c.vocabSize})`;
    }
  }
  return null;
}

/** Throws "<source>: <problem>" when configProblem finds one. */
export function validateConfig(c: LlamaConfig, source: string): void {
  const problem = configProblem(c);
  if (problem) throw new Error(`${source}: ${problem}`);
}

/** Index and value of the first NaN or ±Inf, or null when all values are finite. */
export function firstNonFinite(data: Float32Array): { index: number; value: number } | null {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    // v - v is NaN exactly for NaN and ±Inf: one comparison in the hot loop.
    if (v - v !== 0) return { index: i, value: v };
  }
  return null;
}

/** Visits every distinct tensor with a readable name (`layers.3.wq`, `tokenEmbedding`, ...). */
export function forEachTensor(
  w: LlamaWeights,
  fn: (name: string, data: Float32Array, shape: number[]) => void,
): void {
  const c = w.config;
  fn("tokenEmbedding", w.tokenEmbedding, [c.vocabSize, c.dim]);
  w.layers.forEach((layer, i) => {
    for (const n of LAYER_TENSORS) fn(`layers.${i}.${n}`, layer[n], layerTensorShape(c, n));
  });
  fn("finalNorm", w.finalNorm, [c.dim]);
  if (!c.tiedEmbeddings) fn("lmHead", w.lmHead, [c.vocabSize, c.dim]);
}

/** A problem found by weightsProblem; `tensor` uses forEachTensor's names. */
export interface WeightsProblem {
  problem: string;
  tensor?: string;
}

/** Full consistency check of a loaded model: config, tensor sizes, tying, finiteness. */
export function weightsProblem(w: LlamaWeights): WeightsProblem | null {
  const problem = configProblem(w.config);
  if (problem) return { problem };
  if (w.layers.length !== w.config.nLayers) {
    return { problem: `${w.layers.length} layers, config says ${w.config.nLayers}` };
  }
  const tied = w.lmHead === w.tokenEmbedding;
  if (w.config.tiedEmbeddings !== tied) {
    return {
      problem: `tiedEmbeddings is ${w.config.tiedEmbeddings} but lmHead ${
        tied ? "is" : "is not"
      } the embedding array`,
    };
  }
  let found: WeightsProblem | null = null;
  forEachTensor(w, (tensor, data, shape) => {
    if (found) return;
    if (data.length !== product(shape)) {
      found = { tensor, problem: `has ${data.length} values, expected ${shape.join("×")}` };
      return;
    }
    const bad = firstNonFinite(data);
    if (bad) {
      found = { tensor, problem: `has a non-finite value (${bad.value}) at index ${bad.index}` };
    }
  });
  return found;
}

/**
 * Throws "<source>: tensor <name> <problem>" when weightsProblem finds one. Every loader ends
 * with this check so the engine can trust what it gets.
 */
export function validateWeights(w: LlamaWeights, source: string): void {
  const p = weightsProblem(w);
  if (p) throw new Error(`${source}: ${p.tensor ? `tensor ${p.tensor} ` : ""}${p.problem}`);
}

/**
 * Reorders the rows of a q or k projection (heads·hs × inDim) from interleaved RoPE pairs
 * (llama2.c, GGUF: row h·hs + 2i + j) to the rotate-half layout of Hugging Face
 * (row h·hs + j·hs/2 + i); HF's conversion `w.view(h, hs/2, 2, in).transpose(1, 2)`.
 * Also works for a (heads·hs)-vector such as a bias, with inDim = 1.
 */
export function permuteInterleavedToHalf(
  w: Float32Array,
  heads: number,
  hs: number,
  inDim: number,
): Float32Array {
  return permuteRows(w, heads, hs, inDim, true);
}

/** Inverse of permuteInterleavedToHalf: rotate-half rows back to interleaved pairs. */
export function permuteHalfToInterleaved(
  w: Float32Array,
  heads: number,
  hs: number,
  inDim: number,
): Float32Array {
  return permuteRows(w, heads, hs, inDim, false);
}

function permuteRows(
  w: Float32Array,
  heads: number,
  hs: number,
  inDim: number,
  toHalf: boolean,
): Float32Array {
  if (hs % 2 !== 0) throw new Error(`RoPE row permutation: head size ${hs} is odd`);
  if (w.length !== heads * hs * inDim) {
    throw new Error(
      `RoPE row permutation: tensor has ${w.length} values, expected ${heads}·${hs}·${inDim}`,
    );
  }
  const out = new Float32Array(w.length);
  const half = hs / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const interleaved = h * hs + 2 * i + j, rotateHalf = h * hs + j * half + i;
        const [src, dst] = toHalf ? [interleaved, rotateHalf] : [rotateHalf, interleaved];
        out.set(w.subarray(src * inDim, (src + 1) * inDim), dst * inDim);
      }
    }
  }
  return out;
}
