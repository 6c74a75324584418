/**
 * Learning-rate schedule of a training run: linear warm-up from lr/warmup to lr over the first
 * `warmup` steps, then a cosine or linear decay to `minRatio`·lr (default 10 %, not 0, so the
 * last steps still learn), or constant. A pure function of the step.
 */

export type Schedule = "cosine" | "linear" | "constant";
export const SCHEDULES: readonly Schedule[] = ["cosine", "linear", "constant"];

export interface ScheduleConfig {
  /** Peak learning rate. */
  lr: number;
  /** Optimizer steps in the whole run. */
  steps: number;
  /** Warm-up steps (default 0). */
  warmup?: number;
  /** Default "cosine". */
  schedule?: Schedule;
  /** The decay ends at minRatio·lr (default 0.1). */
  minRatio?: number;
}

/**
 * Learning rate of 0-based optimizer step `step`. Warm-up step i (< warmup) gets lr·(i+1)/warmup;
 * the decay runs over the remaining steps with progress p = (step − warmup)/(steps − warmup) in
 * [0, 1), so the first step after warm-up gets the full lr.
 */
export function learningRate(step: number, cfg: ScheduleConfig): number {
  const { lr, steps, warmup = 0, schedule = "cosine", minRatio = 0.1 } = cfg;
  if (!Number.isInteger(step) || step < 0) {
    throw new RangeError(`learningRate: step must be a non-negative integer, got ${step}`);
  }
  if (!SCHEDULES.includes(schedule)) {
    throw new RangeError(
      `learningRate: unknown schedule "${schedule}"; choose ${SCHEDULES.join(", ")}`,
    );
  }
  if (step < warmup) return lr * (step + 1) / warmup;
  if (schedule === "constant") return lr;
  const p = Math.min(1, (step - warmup) / Math.max(1, steps - warmup));
  const shape = schedule === "cosine" ? 0.5 * (1 + Math.cos(Math.PI * p)) : 1 - p;
  return lr * (minRatio + (1 - minRatio) * shape);
}
