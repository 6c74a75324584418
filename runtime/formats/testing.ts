/** Helpers for the format tests (not part of the runtime API). */
import type { LlamaConfig, LlamaWeights } from "../model/weights.ts";

/** Shared test files: ../shared beside the repository. */
export const SHARED = new URL("../../../shared/", import.meta.url);
export const STORIES_BIN = new URL("models/stories260K/stories260K.bin", SHARED);

export function sameConfig(a: LlamaConfig, b: LlamaConfig, msg = "config"): void {
  const sorted = (c: LlamaConfig) =>
    JSON.stringify(Object.fromEntries(Object.entries(c).sort(([x], [y]) => (x < y ? -1 : 1))));
  if (sorted(a) !== sorted(b)) throw new Error(`${msg}: ${sorted(a)} != ${sorted(b)}`);
}

/** Every tensor equal bit for bit, same config, same tying. */
export function assertSameWeights(a: LlamaWeights, b: LlamaWeights): void {
  sameConfig(a.config, b.config);
  const same = (x: Float32Array, y: Float32Array, what: string) => {
    if (x.length !== y.length) throw new Error(`${what}: length ${x.length} != ${y.length}`);
    const xb = new Uint32Array(x.buffer, x.byteOffset, x.length);
    const yb = new Uint32Array(y.buffer, y.byteOffset, y.length);
    for (let i = 0; i < x.length; i++) {
      if (xb[i] !== yb[i]) throw new Error(`${what}[${i}]: ${x[i]} != ${y[i]}`);
    }
  };
  same(a.tokenEmbedding, b.tokenEmbedding, "tokenEmbedding");
  same(a.finalNorm, b.finalNorm, "finalNorm");
  same(a.lmHead, b.lmHead, "lmHead");
  if ((a.lmHead === a.tokenEmbedding) !== (b.lmHead === b.tokenEmbedding)) {
    throw new Error("one model ties lmHead to the embedding, the other does not");
  }
  if (a.layers.length !== b.layers.length) throw new Error("layer counts differ");
  a.layers.forEach((l, i) => {
    for (const k of Object.keys(l) as (keyof typeof l)[]) same(l[k], b.layers[i][k], `${i}.${k}`);
  });
}

/**
 * A copy of the model with every weight mapped through `f` (e.g. rounding to f16); norms too
 * unless `norms` is false (GGUF keeps them F32).
 */
export function mapWeights(
  w: LlamaWeights,
  f: (x: number) => number,
  { norms = true } = {},
): LlamaWeights {
  const m = (a: Float32Array) => a.map(f);
  const n = (a: Float32Array) => (norms ? a.map(f) : a.slice());
  const tokenEmbedding = m(w.tokenEmbedding);
  return {
    config: { ...w.config },
    tokenEmbedding,
    layers: w.layers.map((l) =>
      Object.fromEntries(
        Object.entries(l).map(([k, v]) => [k, k.endsWith("Norm") ? n(v) : m(v)]),
      ) as unknown as typeof l
    ),
    finalNorm: n(w.finalNorm),
    lmHead: w.config.tiedEmbeddings ? tokenEmbedding : m(w.lmHead),
  };
}
