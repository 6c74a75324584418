/**
 * The demo's savings against a run with every module active (issue 5), estimated from the
 * device's own accounting: the steps that trained every module (the warm-up) give the cost of
 * one all-modules step; that cost × the steps run is the all-modules run, and the savings are
 * 1 − actual / that. An estimate, labelled as such: the all-modules run itself is not made.
 */

/** What one step added to the device's counters. */
export interface StepCost {
  flops: number;
  bytes: number;
  /** Modules trained in the step. */
  modules: number;
}

export interface SavingsEstimate {
  /** 1 − actual / estimated all-modules cost (null without a step that trained every module). */
  flops: number | null;
  bytes: number | null;
  /** Steps the all-modules cost was taken from (their median). */
  basisSteps: number;
}

/** Per-step increments from cumulative counters (the first step counts from 0). */
export function stepCosts(
  cumulative: readonly { flops: number; bytes: number; modules: number }[],
): StepCost[] {
  return cumulative.map((c, i) => ({
    flops: c.flops - (i > 0 ? cumulative[i - 1].flops : 0),
    bytes: c.bytes - (i > 0 ? cumulative[i - 1].bytes : 0),
    modules: c.modules,
  }));
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 === 1 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/**
 * Savings of the run whose steps cost `steps` against `steps.length` all-modules steps. The
 * median of the all-modules steps resists one-off bytes (the link probe's PINGs, HELLO).
 */
export function estimateSavings(steps: readonly StepCost[], totalModules: number): SavingsEstimate {
  const full = steps.filter((s) => s.modules === totalModules);
  if (full.length === 0 || steps.length === 0) return { flops: null, bytes: null, basisSteps: 0 };
  const n = steps.length;
  const actualFlops = steps.reduce((a, s) => a + s.flops, 0);
  const actualBytes = steps.reduce((a, s) => a + s.bytes, 0);
  const allFlops = median(full.map((s) => s.flops)) * n;
  const allBytes = median(full.map((s) => s.bytes)) * n;
  return {
    flops: allFlops > 0 ? 1 - actualFlops / allFlops : null,
    bytes: allBytes > 0 ? 1 - actualBytes / allBytes : null,
    basisSteps: full.length,
  };
}
