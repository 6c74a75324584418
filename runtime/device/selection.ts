/**
 * The device's side of module selection (DLORA.md §3, issue 5): it follows the coordinator's
 * SELECT messages, keeps the reference parameters θ of the last report and the window's
 * sensitivity sums, and at the step the last SELECT asked for (`reportAt`) turns them into one
 * score per module trained since the last report (runtime/device/scores.ts) — only these numbers
 * are sent, in a SCORES frame. It also keeps the accounting the run reports: module-steps
 * trained, kill/revive events with their step, and the active set.
 *
 * Which modules train in a step is decided by the frames the coordinator sends (a killed module
 * gets no GROUP_INPUT); this object only observes that set and never changes LoRA state.
 */
import type { LocalLora, LoraWeights } from "../model/lora.ts";
import { type Proj, projDims } from "../model/modules.ts";
import type { ScoresMessage, SelectMessage } from "../protocol/control.ts";
import {
  changeNorm,
  effectiveWeightChange,
  type ScoreName,
  SensitivityAccumulator,
} from "./scores.ts";

/** One kill/revive/probe/promote/drop move, at the step (steps completed) it was decided. */
export interface SelectionEventRecord {
  step: number;
  kind: string;
  module: string;
  score?: number;
}

function parseKey(key: string): { layer: number; proj: Proj } {
  const dot = key.indexOf(".");
  return { layer: Number(key.slice(0, dot)), proj: key.slice(dot + 1) as Proj };
}

export class DeviceSelection {
  /** Σ over steps of the modules trained in the step. */
  moduleSteps = 0;
  /** Steps trained. */
  steps = 0;
  readonly events: SelectionEventRecord[] = [];
  /** The last SELECT (null until one arrives: jobs without selection never send one). */
  last: SelectMessage | null = null;
  /** Modules trained in the last step. */
  lastTrained: string[] = [];
  /** Steps completed at the last SCORES report (−1 before any). */
  lastReport = -1;
  readonly #lora: LocalLora;
  /** θ at the last report (or at the session's first SELECT), per module. */
  readonly #reference = new Map<string, LoraWeights>();
  readonly #sensitivity = new Map<string, SensitivityAccumulator>();
  /** Modules trained since the last report. */
  readonly #since = new Set<string>();
  /** Steps completed for which a SELECT has arrived (decisions are at step ends). */
  #selectedAt = -1;

  constructor(lora: LocalLora) {
    this.#lora = lora;
  }

  /** Steps completed at which the device reports next (null: never). */
  get reportAt(): number | null {
    return this.last?.reportAt ?? null;
  }

  get score(): ScoreName | null {
    return this.last?.score ?? null;
  }

  /** Steps completed of the last SELECT received (−1 before any). */
  get selectedAt(): number {
    return this.#selectedAt;
  }

  /** Multiplier of the job's learning rate the last SELECT set (1 before any). */
  get lrScale(): number {
    return this.last?.lr_scale ?? 1;
  }

  /** The modules the coordinator last said to train (active and probing), or null. */
  get selected(): string[] | null {
    return this.last ? [...this.last.active, ...this.last.probing] : null;
  }

  /** A SELECT arrived. The first one sets every module's reference θ. */
  onSelect(m: SelectMessage): void {
    if (this.last === null) {
      for (const key of this.#lora.moduleKeys()) this.#snapshot(key);
    }
    const known = new Set(this.#lora.moduleKeys());
    for (const k of [...m.active, ...m.probing]) {
      if (!known.has(k)) {
        throw new Error(`SELECT names module ${k}, which this device's adapters do not have`);
      }
    }
    this.last = m;
    this.#selectedAt = m.step;
    for (const e of m.events) this.events.push({ step: m.step, ...e });
  }

  /** After the step's backward, before clipping: the sensitivity score's Σ|θ·∇θ|. */
  afterBackward(trained: Iterable<string>): void {
    if (this.score !== "sensitivity" || this.reportAt === null) return;
    for (const key of trained) {
      const { layer, proj } = parseKey(key);
      const w = this.#lora.weights(layer, proj), g = this.#lora.grads(layer, proj);
      let acc = this.#sensitivity.get(key);
      if (acc === undefined) {
        acc = new SensitivityAccumulator();
        this.#sensitivity.set(key, acc);
      }
      acc.add(w.A, g.dA);
      acc.add(w.B, g.dB);
      acc.endStep();
    }
  }

  /**
   * After the optimizer step; `completed` = steps done. Returns the SCORES to send when this is
   * the step the coordinator asked for, else null.
   */
  afterStep(completed: number, trained: Iterable<string>): ScoresMessage | null {
    const now = [...trained];
    this.steps++;
    this.moduleSteps += now.length;
    this.lastTrained = now;
    for (const k of now) this.#since.add(k);
    if (this.reportAt === null || completed !== this.reportAt) return null;
    const score = this.score!;
    const values: Record<string, number> = {};
    for (const key of this.#lora.moduleKeys()) {
      if (!this.#since.has(key)) continue;
      values[key] = this.#scoreOf(key, score);
      this.#snapshot(key);
    }
    this.#since.clear();
    this.#sensitivity.clear();
    this.lastReport = completed;
    return { step: completed, score, values };
  }

  /**
   * Restarts the score reference of modules whose shape changed (grown by a SELECT's `rank`):
   * their change is measured from the grown weights on.
   */
  rebase(keys: Iterable<string>): void {
    for (const key of keys) this.#snapshot(key);
  }

  #snapshot(key: string): void {
    const { layer, proj } = parseKey(key);
    this.#reference.set(key, this.#lora.weights(layer, proj));
  }

  #scoreOf(key: string, score: ScoreName): number {
    if (score === "sensitivity") return this.#sensitivity.get(key)?.mean() ?? 0;
    const { layer, proj } = parseKey(key);
    const now = this.#lora.weights(layer, proj), ref = this.#reference.get(key)!;
    if (score === "change") return changeNorm([now.A, now.B], [ref.A, ref.B]);
    const { inDim, outDim } = projDims(this.#lora.config, proj);
    // Raw ‖Δ(s·B·A)‖_F: a wide module's larger change counts for more (measured better than
    // the per-element RMS with bench/kr-sim-dev.ts, README "Kill and Revive").
    return effectiveWeightChange(
      now.A,
      now.B,
      ref.A,
      ref.B,
      this.#lora.rankOf(layer, proj),
      inDim,
      outDim,
      this.#lora.scale,
    );
  }
}
