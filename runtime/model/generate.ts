/**
 * Text generation with a KV cache: the prompt goes through the blocks in one pass (prefill),
 * then one token at a time (attentionDecode over the cache), with LoRA applied when hooks are
 * given. Greedy at temperature 0, else softmax(logits/temperature) sampling, optionally
 * restricted to the top-p nucleus, from a seeded PRNG.
 */
import type { LoraHooks } from "./hooks.ts";
import type { LlamaModel } from "./llama.ts";
import { mulberry32 } from "./lora.ts";

export interface SamplingOptions {
  /** 0 (default) = greedy: the most likely token, the lowest id on ties. */
  temperature?: number;
  /** Nucleus sampling: keep the most likely tokens whose probabilities sum past topP (0,1]. */
  topP?: number;
  /** PRNG seed for sampling (default 0). */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** New tokens to generate at most. */
  maxTokens: number;
  /** Generation stops after producing one of these (it is included). Default: none. */
  stopIds?: readonly number[];
  hooks?: LoraHooks;
  /** Called with each new token as it is produced. */
  onToken?: (id: number) => void;
}

export interface GenerateResult {
  /** Prompt followed by the generated tokens. */
  ids: number[];
  generated: number[];
  /** "length": maxTokens reached; "stop": a stop id; "context": the model's seqLen reached. */
  stopReason: "length" | "stop" | "context";
}

/** Picks the next token from logits (V). */
export class Sampler {
  readonly temperature: number;
  readonly topP: number;
  readonly #rand: () => number;
  #probs: Float64Array = new Float64Array(0);
  #order: Int32Array = new Int32Array(0);

  constructor(opts: SamplingOptions = {}) {
    this.temperature = opts.temperature ?? 0;
    this.topP = opts.topP ?? 1;
    if (!(this.temperature >= 0) || !Number.isFinite(this.temperature)) {
      throw new RangeError(`temperature must be ≥ 0, got ${this.temperature}`);
    }
    if (!(this.topP > 0 && this.topP <= 1)) {
      throw new RangeError(`topP must lie in (0, 1], got ${this.topP}`);
    }
    this.#rand = mulberry32(opts.seed ?? 0);
  }

  sample(logits: ArrayLike<number>): number {
    const V = logits.length;
    if (this.temperature === 0) return argmax(logits);
    if (this.#probs.length !== V) {
      this.#probs = new Float64Array(V);
      this.#order = new Int32Array(V);
    }
    const p = this.#probs;
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[i]);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += p[i] = Math.exp((logits[i] - max) / this.temperature);
    const r = this.#rand();
    if (this.topP >= 1) {
      let cdf = 0;
      for (let i = 0; i < V; i++) {
        cdf += p[i] / sum;
        if (r < cdf) return i;
      }
      return V - 1; // rounding: r landed past the last cumulative sum
    }
    // Nucleus: most likely first (ties by id), keep the shortest prefix whose mass exceeds topP.
    const order = this.#order;
    for (let i = 0; i < V; i++) order[i] = i;
    order.sort((a, b) => p[b] - p[a] || a - b);
    let kept = 0, mass = 0;
    while (kept < V) {
      mass += p[order[kept++]] / sum;
      if (mass > this.topP) break;
    }
    let cdf = 0;
    for (let j = 0; j < kept; j++) {
      cdf += p[order[j]] / sum / mass;
      if (r < cdf) return order[j];
    }
    return order[kept - 1];
  }
}

/** Index of the largest value, the first on ties (as llama2.c's argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Continues `prompt` (token ids, BOS included if wanted) by up to maxTokens tokens. */
export async function generate(
  model: LlamaModel,
  prompt: readonly number[],
  opts: GenerateOptions,
): Promise<GenerateResult> {
  const c = model.config, P = prompt.length;
  if (P < 1) throw new RangeError("generate: the prompt needs at least one token (e.g. BOS)");
  if (P > c.seqLen) {
    throw new RangeError(`generate: prompt of ${P} tokens exceeds the model's context ${c.seqLen}`);
  }
  for (const id of prompt) {
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
      throw new RangeError(`generate: token ${id} is outside the vocabulary [0, ${c.vocabSize})`);
    }
  }
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 0) {
    throw new RangeError(
      `generate: maxTokens must be a non-negative integer, got ${opts.maxTokens}`,
    );
  }
  const sampler = new Sampler(opts), stop = new Set(opts.stopIds ?? []);
  const maxT = Math.min(c.seqLen, P + opts.maxTokens);
  const ids = [...prompt], generated: number[] = [];
  if (opts.maxTokens === 0) return { ids, generated, stopReason: "length" };
  const cache = model.blocks.createCache(1, maxT);
  try {
    const shape = { B: 1, T: P };
    let hL = await model.blocks.prefill(model.embed(prompt, shape), shape, cache, opts.hooks);
    let logits = model.ends.logits(hL, shape, "last");
    for (let pos = P;; pos++) {
      const next = sampler.sample(logits.data);
      ids.push(next);
      generated.push(next);
      opts.onToken?.(next);
      if (stop.has(next)) return { ids, generated, stopReason: "stop" };
      if (generated.length >= opts.maxTokens) return { ids, generated, stopReason: "length" };
      if (pos >= maxT) return { ids, generated, stopReason: "context" };
      const one = { B: 1, T: 1 };
      hL = await model.blocks.decode(model.embed([next], one), pos, cache, opts.hooks);
      logits = model.ends.logits(hL, one, "last");
    }
  } finally {
    cache.free();
  }
}
