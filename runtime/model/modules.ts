/**
 * LoRA modules: one (A, B) pair on one projection of one layer (DLORA.md §2).
 * Names and shapes shared by the engine, the adapter formats and the scheduler.
 */
import { headSize, type LlamaConfig } from "./weights.ts";

export type Proj = "q" | "k" | "v" | "o" | "gate" | "up" | "down";
export const PROJS: readonly Proj[] = ["q", "k", "v", "o", "gate", "up", "down"];

/** PEFT / Hugging Face module name of each projection. */
export const HF_PROJ: Record<Proj, string> = {
  q: "self_attn.q_proj",
  k: "self_attn.k_proj",
  v: "self_attn.v_proj",
  o: "self_attn.o_proj",
  gate: "mlp.gate_proj",
  up: "mlp.up_proj",
  down: "mlp.down_proj",
};

/** Input and output width of a projection: W is out×in, A is r×in, B is out×r. */
export function projDims(c: LlamaConfig, proj: Proj): { inDim: number; outDim: number } {
  const hs = headSize(c);
  switch (proj) {
    case "q":
      return { inDim: c.dim, outDim: c.nHeads * hs };
    case "k":
    case "v":
      return { inDim: c.dim, outDim: c.nKvHeads * hs };
    case "o":
      return { inDim: c.nHeads * hs, outDim: c.dim };
    case "gate":
    case "up":
      return { inDim: c.dim, outDim: c.hiddenDim };
    case "down":
      return { inDim: c.hiddenDim, outDim: c.dim };
  }
}

/** "3.q" — the key of module (layer 3, q) in maps and reports. */
export function moduleKey(layer: number, proj: Proj): string {
  return `${layer}.${proj}`;
}

/** Parses "q,k,v,o" (or "all") into projections; unknown names are an error. */
export function parseTargets(spec: string): Proj[] {
  if (spec.trim() === "all") return [...PROJS];
  const out: Proj[] = [];
  for (const raw of spec.split(",")) {
    const name = raw.trim().replace(/_proj$/, "");
    if (name === "") continue;
    if (!(PROJS as readonly string[]).includes(name)) {
      throw new Error(`unknown LoRA target "${raw.trim()}"; choose from ${PROJS.join(", ")}`);
    }
    if (!out.includes(name as Proj)) out.push(name as Proj);
  }
  if (out.length === 0) throw new Error("no LoRA targets given");
  return PROJS.filter((p) => out.includes(p));
}
