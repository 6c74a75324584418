/**
 * The seam of the U-shaped split (DLORA.md §2): the transformer blocks call out to a LoRA hook at
 * every projection group, once forward and once backward. `LocalLora` (lora.ts) serves it in the
 * same process; a device serves the same calls remotely.
 */
import type { F32 } from "../../kernels/mod.ts";
import type { Proj } from "./modules.ts";

export type { Proj };

/** One active projection's output Y (M,out), to which the hook adds ΔY. */
export interface ProjOutput {
  proj: Proj;
  Y: F32;
}

/** One active projection's upstream gradient G = ∂L/∂Y (M,out). */
export interface ProjGrad {
  proj: Proj;
  G: F32;
}

/**
 * LoRA on the frozen projections. Calls come once per input group (`PROJ_GROUPS`) and only with
 * the group's active modules; a group with none is not called at all.
 *
 * Contract: `X` (M,in) stays valid and unchanged from `forward` until the matching `backward` of
 * the same layer returns (the engine saves it), so a hook may keep a reference instead of a
 * copy. `Y` and `G` are only valid during the call (or until its promise settles); a hook must
 * not write `G`. M = B·T rows; `X.shape` is [M, in].
 */
export interface LoraHooks {
  isActive(layer: number, proj: Proj): boolean;
  /**
   * Adds ΔY = s·(X·Aᵀ)·Bᵀ into each output's Y. Y already holds X·Wᵀ (for o and down plus the
   * residual stream): add into it, never overwrite it.
   */
  forward(layer: number, X: F32, outputs: readonly ProjOutput[]): void | Promise<void>;
  /**
   * Accumulates dA, dB of each module and adds Σ s·(G·B)·A into dX (M,in). dX is null when no
   * trained module lies upstream of this group (the backward stops here): only dA, dB are wanted.
   */
  backward(layer: number, grads: readonly ProjGrad[], dX: F32 | null): void | Promise<void>;
}

/** Projections that share one input, in the order the block runs them. */
export const PROJ_GROUPS: readonly (readonly Proj[])[] = [
  ["q", "k", "v"],
  ["o"],
  ["gate", "up"],
  ["down"],
];
