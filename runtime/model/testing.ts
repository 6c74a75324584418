/** Shared test fixtures for the engine's tests: stories260K files, LoRA set-ups, references. */
import { Kernels } from "../../kernels/mod.ts";
import { rng } from "../../tests/util.ts";
import { parseLlama2c } from "../formats/llama2c.ts";
import { LocalLora, type LoraOptions } from "./lora.ts";
import type { RefLora } from "./reference.ts";
import type { LlamaConfig, LlamaWeights } from "./weights.ts";

export const SHARED = new URL("../../../shared/", import.meta.url);
export const STORIES_BIN = new URL("models/stories260K/stories260K.bin", SHARED);
export const TOK512 = new URL("models/stories260K/tok512.bin", SHARED);
export const ORACLE = new URL("models/stories260K/oracle.json", SHARED);

export interface OracleCase {
  text: string;
  ids: number[];
  logits_pos0_first8: number[];
  logits_last_first8: number[];
  mean_nll_nats: number;
}

export interface Oracle {
  cases: OracleCase[];
  greedy_60_from_bos_ids: number[];
}

export function loadOracle(): Oracle {
  return JSON.parse(Deno.readTextFileSync(ORACLE));
}

export function loadStories(): LlamaWeights {
  return parseLlama2c(Deno.readFileSync(STORIES_BIN), "stories260K.bin");
}

const kernels = new Map<number, Promise<Kernels>>();
// Stop the cached instances' worker threads when the test file ends, rather than leave threads
// spinning on shared memory while the runtime tears down.
const loaded = new Set<Kernels>();
globalThis.addEventListener("unload", () => {
  for (const k of loaded) k.close();
});
/** One kernel instance per thread count for the whole test file. */
export function kernelsWith(threads: number): Promise<Kernels> {
  let k = kernels.get(threads);
  if (!k) {
    k = Kernels.load({ threads }).then((x) => (loaded.add(x), x));
    kernels.set(threads, k);
  }
  return k;
}

/** A LocalLora whose B is random too (PEFT starts B at 0, which leaves A without gradient). */
export function randomLora(
  k: Kernels,
  config: LlamaConfig,
  opts: Partial<LoraOptions> = {},
  seed = 1,
  bScale = 0.05,
): LocalLora {
  const lora = new LocalLora(k, config, { rank: 4, alpha: 8, seed, ...opts });
  const r = rng(seed + 1000);
  const weights = lora.exportWeights("all");
  for (const w of weights.values()) {
    for (let i = 0; i < w.B.length; i++) w.B[i] = (2 * r() - 1) * bScale;
  }
  lora.importWeights(weights);
  return lora;
}

/** The reference's view of `lora`'s active modules. */
export function refLoraOf(lora: LocalLora): RefLora {
  const modules = new Map<string, { A: Float64Array; B: Float64Array }>();
  for (const [key, w] of lora.exportWeights("active")) {
    modules.set(key, { A: Float64Array.from(w.A), B: Float64Array.from(w.B) });
  }
  return { scale: lora.scale, modules };
}

/** Deterministic token ids in [3, V). */
export function randomIds(n: number, V: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => 3 + Math.floor(r() * (V - 3)));
}
