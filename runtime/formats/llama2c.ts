/**
 * llama2.c checkpoints (Karpathy's run.c format), fp32.
 *
 * Legacy v0: 7×int32 header `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size
 * (negative = untied head), seq_len`, then token_embedding, rms_att, wq, wk, wv, wo, rms_ffn,
 * w1, w2, w3 (each stacked over layers), rms_final, freq_cis_real/imag (skipped), wcls if untied.
 * Version 1 (`ak42` magic, 256-byte header, norms first) is read too; version 2 (int8) is not.
 * q/k rows are interleaved RoPE pairs on disk and rotate-half (HF) in memory.
 */
import {
  CONFIG_DEFAULTS,
  type LlamaConfig,
  type LlamaLayer,
  type LlamaWeights,
  permuteHalfToInterleaved,
  permuteInterleavedToHalf,
  validateConfig,
} from "../model/weights.ts";
import { checkConfig, checkWeights, commas, FormatError } from "./errors.ts";
import { decodeF32, encodeF32 } from "./half.ts";

const V0_HEADER_BYTES = 28;
const V1_HEADER_BYTES = 256;
const MAGIC_AK42 = 0x616b3432;

/** Parses a llama2.c checkpoint; `name` (the file name) starts every error message. */
export function parseLlama2c(bytes: Uint8Array | ArrayBuffer, name = "model.bin"): LlamaWeights {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (buf.length < V0_HEADER_BYTES) {
    throw new FormatError(
      name,
      `truncated: ${buf.length} bytes is shorter than the ${V0_HEADER_BYTES}-byte llama2.c header`,
    );
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const first = dv.getUint32(0, true);
  if (first === MAGIC_AK42) return parseV1(buf, dv, name);

  const h = Array.from({ length: 7 }, (_, i) => dv.getInt32(4 * i, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, signedVocab, seqLen] = h;
  const config: LlamaConfig = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize: Math.abs(signedVocab),
    seqLen,
    tiedEmbeddings: signedVocab > 0,
    ...CONFIG_DEFAULTS,
  };
  checkConfig(config, name, `header [${h.join(", ")}]`);
  const hs = dim / nHeads;
  const freqFloats = seqLen * hs; // freq_cis_real and _imag, seq_len × hs/2 each
  const expected = V0_HEADER_BYTES + 4 * (modelFloats(config) + freqFloats);
  checkLength(buf.length, expected, name, "llama2.c v0");

  const r = new F32Cursor(buf, V0_HEADER_BYTES);
  const D = dim, H = hiddenDim, L = nLayers, KVD = nKvHeads * hs, V = config.vocabSize;
  const tokenEmbedding = r.take(V * D);
  const attnNorm = r.stacked(L, D), wq = r.stacked(L, D * D), wk = r.stacked(L, KVD * D);
  const wv = r.stacked(L, KVD * D), wo = r.stacked(L, D * D), ffnNorm = r.stacked(L, D);
  const gate = r.stacked(L, H * D), down = r.stacked(L, D * H), up = r.stacked(L, H * D);
  const finalNorm = r.take(D);
  r.skip(freqFloats);
  const lmHead = config.tiedEmbeddings ? tokenEmbedding : r.take(V * D);
  const layers = assembleLayers(config, { attnNorm, wq, wk, wv, wo, ffnNorm, gate, down, up });
  return checkWeights({ config, tokenEmbedding, layers, finalNorm, lmHead }, name, llama2cName);
}

/** Version 1 export: magic, version, 7 params, shared-classifier byte, 256-byte header. */
function parseV1(buf: Uint8Array, dv: DataView, name: string): LlamaWeights {
  if (buf.length < V1_HEADER_BYTES) {
    throw new FormatError(
      name,
      `truncated: ${buf.length} bytes is shorter than the ${V1_HEADER_BYTES}-byte llama2.c v1 header`,
    );
  }
  const version = dv.getInt32(4, true);
  if (version !== 1) {
    throw new FormatError(
      name,
      `llama2.c export version ${version} is not supported (only the fp32 v0 and v1 formats)`,
    );
  }
  const h = Array.from({ length: 7 }, (_, i) => dv.getInt32(8 + 4 * i, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen] = h;
  const config: LlamaConfig = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize,
    seqLen,
    tiedEmbeddings: buf[36] !== 0,
    ...CONFIG_DEFAULTS,
  };
  checkConfig(config, name, `v1 header [${h.join(", ")}]`);
  checkLength(buf.length, V1_HEADER_BYTES + 4 * modelFloats(config), name, "llama2.c v1");
  const r = new F32Cursor(buf, V1_HEADER_BYTES);
  const hs = dim / nHeads;
  const D = dim, H = hiddenDim, L = nLayers, KVD = nKvHeads * hs, V = vocabSize;
  const attnNorm = r.stacked(L, D), ffnNorm = r.stacked(L, D), finalNorm = r.take(D);
  const tokenEmbedding = r.take(V * D);
  const wq = r.stacked(L, D * D), wk = r.stacked(L, KVD * D), wv = r.stacked(L, KVD * D);
  const wo = r.stacked(L, D * D);
  const gate = r.stacked(L, H * D), down = r.stacked(L, D * H), up = r.stacked(L, H * D);
  const lmHead = config.tiedEmbeddings ? tokenEmbedding : r.take(V * D);
  const layers = assembleLayers(config, { attnNorm, wq, wk, wv, wo, ffnNorm, gate, down, up });
  return checkWeights({ config, tokenEmbedding, layers, finalNorm, lmHead }, name, llama2cName);
}

/**
 * Serializes to the legacy v0 format run.c reads (freq_cis tables recomputed from ropeTheta).
 * llama2.c has no room for normEps, bosId or eosId: run.c assumes 1e-5, 1 and 2.
 */
export function writeLlama2c(w: LlamaWeights): Uint8Array {
  const c = w.config;
  validateConfig(c, "writeLlama2c");
  const hs = c.dim / c.nHeads;
  const floats = modelFloats(c) + c.seqLen * hs;
  const out = new Uint8Array(V0_HEADER_BYTES + 4 * floats);
  const dv = new DataView(out.buffer);
  const header = [
    c.dim,
    c.hiddenDim,
    c.nLayers,
    c.nHeads,
    c.nKvHeads,
    c.tiedEmbeddings ? c.vocabSize : -c.vocabSize,
    c.seqLen,
  ];
  header.forEach((v, i) => dv.setInt32(4 * i, v, true));
  let pos = V0_HEADER_BYTES;
  const put = (a: Float32Array) => {
    out.set(encodeF32(a), pos);
    pos += a.byteLength;
  };
  const each = (f: (l: LlamaLayer) => Float32Array) => w.layers.forEach((l) => put(f(l)));
  put(w.tokenEmbedding);
  each((l) => l.attnNorm);
  each((l) => permuteHalfToInterleaved(l.wq, c.nHeads, hs, c.dim));
  each((l) => permuteHalfToInterleaved(l.wk, c.nKvHeads, hs, c.dim));
  each((l) => l.wv);
  each((l) => l.wo);
  each((l) => l.ffnNorm);
  each((l) => l.gate);
  each((l) => l.down);
  each((l) => l.up);
  put(w.finalNorm);
  const [cos, sin] = ropeTables(c.seqLen, hs, c.ropeTheta);
  put(cos);
  put(sin);
  if (!c.tiedEmbeddings) put(w.lmHead);
  return out;
}

/** llama2.c's freq_cis_real/imag: cos/sin(t·θ^(-2i/hs)), seq_len × hs/2 each. */
function ropeTables(seqLen: number, hs: number, theta: number): [Float32Array, Float32Array] {
  const half = hs / 2, cos = new Float32Array(seqLen * half), sin = new Float32Array(seqLen * half);
  for (let i = 0; i < half; i++) {
    const freq = Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / hs)));
    for (let t = 0; t < seqLen; t++) {
      const angle = Math.fround(t * freq);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return [cos, sin];
}

/** Floats of the model tensors alone (no freq_cis), including wcls when untied. */
function modelFloats(c: LlamaConfig): number {
  const hs = c.dim / c.nHeads, D = c.dim, H = c.hiddenDim, KVD = c.nKvHeads * hs;
  const perLayer = 2 * D + 2 * D * D + 2 * KVD * D + 3 * H * D;
  return c.vocabSize * D * (c.tiedEmbeddings ? 1 : 2) + c.nLayers * perLayer + D;
}

function checkLength(actual: number, expected: number, name: string, format: string): void {
  if (actual < expected) {
    throw new FormatError(
      name,
      `truncated: header implies ${commas(expected)} bytes, file has ${commas(actual)}`,
    );
  }
  if (actual > expected) {
    throw new FormatError(
      name,
      `header implies ${commas(expected)} bytes, file has ${commas(actual)} ` +
        `(${commas(actual - expected)} extra): not a ${format} checkpoint, or its header is wrong`,
    );
  }
}

type Stacked = Record<keyof LlamaLayer, Float32Array[]>;

/** Splits per-layer stacks into layers, permuting q/k rows into the HF layout. */
function assembleLayers(
  c: LlamaConfig,
  s: Stacked,
): LlamaLayer[] {
  const hs = c.dim / c.nHeads;
  return Array.from({ length: c.nLayers }, (_, i) => ({
    attnNorm: s.attnNorm[i],
    wq: permuteInterleavedToHalf(s.wq[i], c.nHeads, hs, c.dim),
    wk: permuteInterleavedToHalf(s.wk[i], c.nKvHeads, hs, c.dim),
    wv: s.wv[i],
    wo: s.wo[i],
    ffnNorm: s.ffnNorm[i],
    gate: s.gate[i],
    down: s.down[i],
    up: s.up[i],
  }));
}

/** llama2.c's own tensor names, so a NaN report points into the file. */
function llama2cName(layer: number, field: string): string {
  const names: Record<string, string> = {
    tokenEmbedding: "token_embedding_table",
    finalNorm: "rms_final_weight",
    lmHead: "wcls",
    attnNorm: "rms_att_weight",
    ffnNorm: "rms_ffn_weight",
    gate: "w1",
    down: "w2",
    up: "w3",
  };
  const n = names[field] ?? field;
  return layer < 0 ? n : `${n} (layer ${layer})`;
}

/** Sequential f32 reader; lengths were checked against the header before it is used. */
class F32Cursor {
  constructor(private buf: Uint8Array, private pos: number) {}
  take(n: number): Float32Array {
    const a = decodeF32(this.buf.subarray(this.pos, this.pos + 4 * n), n);
    this.pos += 4 * n;
    return a;
  }
  stacked(layers: number, n: number): Float32Array[] {
    return Array.from({ length: layers }, () => this.take(n));
  }
  skip(n: number): void {
    this.pos += 4 * n;
  }
}
