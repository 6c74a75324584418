/** Synthetic experiment rows for the aggregation, report and plot tests. */
import type { Row } from "./aggregate.ts";

/** A row with round numbers; `over` sets what a test is about. */
export function syntheticRow(over: Partial<Row> & Pick<Row, "task" | "policy">): Row {
  const base: Row = {
    task: over.task,
    policy: over.policy,
    score: over.policy === "kr" ? "change" : null,
    budget: over.policy === "all" ? null : 0.125,
    seed: 1,
    steps: 200,
    codec: "f32",
    nll_active: 2.8,
    nll_all: 2.8,
    device_flops: 1000e6,
    device_flops_lora: 600e6,
    bytes_up: 100e6,
    bytes_down: 100e6,
    module_steps_frac: 1,
    wall_s: 10,
  };
  return { ...base, ...over };
}

/**
 * One task and seed: `all` at 200/100/50 steps (NLL 2.8/3.0/3.3 at 1000/500/250 MFLOP) and
 * default KR at ρ=0.125 with 470 MFLOP (70 LoRA), 12+12 MB and NLL 2.9.
 */
export function taskRows(task: string, seed: number, kr: Partial<Row> = {}): Row[] {
  return [
    syntheticRow({ task, seed, policy: "all" }),
    syntheticRow({
      task,
      seed,
      policy: "all",
      steps: 100,
      nll_active: 3.0,
      nll_all: 3.0,
      device_flops: 500e6,
      device_flops_lora: 300e6,
      bytes_up: 50e6,
      bytes_down: 50e6,
    }),
    syntheticRow({
      task,
      seed,
      policy: "all",
      steps: 50,
      nll_active: 3.3,
      nll_all: 3.3,
      device_flops: 250e6,
      device_flops_lora: 150e6,
      bytes_up: 25e6,
      bytes_down: 25e6,
    }),
    syntheticRow({
      task,
      seed,
      policy: "kr",
      nll_active: 2.9,
      nll_all: 2.85,
      device_flops: 470e6,
      device_flops_lora: 70e6,
      bytes_up: 12e6,
      bytes_down: 12e6,
      module_steps_frac: 0.2,
      ...kr,
    }),
  ];
}
