/**
 * A slow, plain float64 Llama forward with LoRA, for tests only: the engine's logits and losses
 * are checked against it, and LoRA gradients against its central finite differences.
 * Same math as blocks.ts/ends.ts: RMSNorm, rotate-half RoPE (HF q/k row order), causal GQA
 * attention, SwiGLU, tied or untied head, cross-entropy; ΔY = s·(X·Aᵀ)·Bᵀ on each module.
 */
import { headSize, type LlamaWeights } from "./weights.ts";
import { moduleKey, type Proj } from "./modules.ts";

/** LoRA pair of one module, float64 or float32, keyed by moduleKey(layer, proj). */
export interface RefModule {
  A: ArrayLike<number>; // (r,in)
  B: ArrayLike<number>; // (out,r)
  /** LoRA dropout: the module sees X ⊙ mask/(1−p) (mask is M·in, 1 = kept). */
  mask?: ArrayLike<number>;
  dropout?: number;
}

export interface RefLora {
  scale: number;
  modules: Map<string, RefModule>;
}

export interface RefOutput {
  /** (M,V) */
  logits: Float64Array;
  /** (M) losses; 0 where the target is -1. */
  losses: Float64Array;
  mean: number;
  /** (M,D) */
  hL: Float64Array;
}

/** y (M,N) = x (M,K) · wᵀ (w is (N,K)). */
function matmulT(x: Float64Array, w: ArrayLike<number>, M: number, K: number, N: number) {
  const y = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let p = 0; p < K; p++) s += x[i * K + p] * w[j * K + p];
      y[i * N + j] = s;
    }
  }
  return y;
}

function rmsnorm(x: Float64Array, w: ArrayLike<number>, M: number, D: number, eps: number) {
  const y = new Float64Array(M * D);
  for (let i = 0; i < M; i++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[i * D + j] ** 2;
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let j = 0; j < D; j++) y[i * D + j] = x[i * D + j] * r * w[j];
  }
  return y;
}

function addLora(
  y: Float64Array,
  x: Float64Array,
  lora: RefLora | undefined,
  layer: number,
  proj: Proj,
  M: number,
  IN: number,
  OUT: number,
) {
  const m = lora?.modules.get(moduleKey(layer, proj));
  if (!m) return;
  const R = m.A.length / IN;
  let xin = x;
  if (m.mask) {
    const keep = 1 / (1 - (m.dropout ?? 0)), mask = m.mask;
    xin = x.map((v, i) => (mask[i] ? v * keep : 0));
  }
  const xa = matmulT(xin, m.A, M, IN, R);
  const d = matmulT(xa, m.B, M, R, OUT);
  for (let i = 0; i < y.length; i++) y[i] += lora!.scale * d[i];
}

/** Rotate-half RoPE in place on x (M rows of `heads` heads of hs), positions t = row % T. */
function rope(x: Float64Array, M: number, T: number, heads: number, hs: number, theta: number) {
  const half = hs / 2;
  for (let i = 0; i < M; i++) {
    const pos = i % T;
    for (let h = 0; h < heads; h++) {
      const o = (i * heads + h) * hs;
      for (let j = 0; j < half; j++) {
        const a = pos * Math.pow(theta, (-2 * j) / hs);
        const c = Math.cos(a), s = Math.sin(a);
        const x0 = x[o + j], x1 = x[o + j + half];
        x[o + j] = x0 * c - x1 * s;
        x[o + j + half] = x1 * c + x0 * s;
      }
    }
  }
}

/** Forward of ids (B·T) from h0 = embedding rows (or the given h0), then loss on targets. */
export function referenceForward(
  w: LlamaWeights,
  ids: ArrayLike<number>,
  targets: ArrayLike<number> | null,
  B: number,
  T: number,
  lora?: RefLora,
  h0?: ArrayLike<number>,
): RefOutput {
  const c = w.config, D = c.dim, H = c.hiddenDim, hs = headSize(c);
  const NH = c.nHeads, NKV = c.nKvHeads, Dq = NH * hs, Dkv = NKV * hs, V = c.vocabSize;
  const M = B * T;
  let h = new Float64Array(M * D);
  if (h0) h.set(Array.from(h0));
  else {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < D; j++) h[i * D + j] = w.tokenEmbedding[ids[i] * D + j];
    }
  }
  w.layers.forEach((L, l) => {
    const x = rmsnorm(h, L.attnNorm, M, D, c.normEps);
    const q = matmulT(x, L.wq, M, D, Dq), k = matmulT(x, L.wk, M, D, Dkv);
    const v = matmulT(x, L.wv, M, D, Dkv);
    addLora(q, x, lora, l, "q", M, D, Dq);
    addLora(k, x, lora, l, "k", M, D, Dkv);
    addLora(v, x, lora, l, "v", M, D, Dkv);
    rope(q, M, T, NH, hs, c.ropeTheta);
    rope(k, M, T, NKV, hs, c.ropeTheta);
    const ao = new Float64Array(M * Dq);
    const scores = new Float64Array(T);
    for (let b = 0; b < B; b++) {
      for (let hd = 0; hd < NH; hd++) {
        const kv = Math.floor(hd / (NH / NKV));
        for (let t = 0; t < T; t++) {
          const qo = ((b * T + t) * NH + hd) * hs;
          let max = -Infinity;
          for (let s = 0; s <= t; s++) {
            const ko = ((b * T + s) * NKV + kv) * hs;
            let dot = 0;
            for (let j = 0; j < hs; j++) dot += q[qo + j] * k[ko + j];
            scores[s] = dot / Math.sqrt(hs);
            max = Math.max(max, scores[s]);
          }
          let sum = 0;
          for (let s = 0; s <= t; s++) sum += scores[s] = Math.exp(scores[s] - max);
          for (let s = 0; s <= t; s++) {
            const vo = ((b * T + s) * NKV + kv) * hs, p = scores[s] / sum;
            for (let j = 0; j < hs; j++) ao[qo + j] += p * v[vo + j];
          }
        }
      }
    }
    const o = matmulT(ao, L.wo, M, Dq, D);
    addLora(o, ao, lora, l, "o", M, Dq, D);
    const hMid = h.map((val, i) => val + o[i]);
    const x2 = rmsnorm(hMid, L.ffnNorm, M, D, c.normEps);
    const g = matmulT(x2, L.gate, M, D, H), u = matmulT(x2, L.up, M, D, H);
    addLora(g, x2, lora, l, "gate", M, D, H);
    addLora(u, x2, lora, l, "up", M, D, H);
    const hm = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
    const dn = matmulT(hm, L.down, M, H, D);
    addLora(dn, hm, lora, l, "down", M, H, D);
    h = hMid.map((val, i) => val + dn[i]);
  });
  const xf = rmsnorm(h, w.finalNorm, M, D, c.normEps);
  const logits = matmulT(xf, w.lmHead, M, D, V);
  const losses = new Float64Array(M);
  let sum = 0, count = 0;
  if (targets) {
    for (let i = 0; i < M; i++) {
      if (targets[i] === -1) continue;
      let max = -Infinity;
      for (let j = 0; j < V; j++) max = Math.max(max, logits[i * V + j]);
      let z = 0;
      for (let j = 0; j < V; j++) z += Math.exp(logits[i * V + j] - max);
      losses[i] = Math.log(z) + max - logits[i * V + targets[i]];
      sum += losses[i];
      count++;
    }
  }
  return { logits, losses, mean: count > 0 ? sum / count : NaN, hL: h };
}
