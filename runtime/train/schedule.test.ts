import { assert, assertClose, assertEquals, assertThrows } from "../../tests/util.ts";
import { learningRate } from "./schedule.ts";

const lrs = (cfg: Parameters<typeof learningRate>[1]) =>
  Array.from({ length: cfg.steps }, (_, s) => learningRate(s, cfg));

Deno.test("learning rate: linear warm-up reaches the peak on the last warm-up step", () => {
  const got = lrs({ lr: 1, steps: 10, warmup: 4, schedule: "constant" });
  assertClose(got, [0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1], { atol: 1e-12 });
});

Deno.test("learning rate: cosine starts at the peak after warm-up and decays towards 10 %", () => {
  const cfg = { lr: 2e-3, steps: 102, warmup: 2 } as const; // 100 decay steps
  assertEquals(learningRate(2, cfg), 2e-3);
  // Half-way through the decay the cosine is at the midpoint of lr and 0.1·lr.
  assertClose([learningRate(52, cfg)], [(2e-3 + 2e-4) / 2], { atol: 1e-15 });
  const all = lrs(cfg).slice(2);
  for (let i = 1; i < all.length; i++) assert(all[i] < all[i - 1], `not decreasing at ${i}`);
  assert(all.at(-1)! > 2e-4 && all.at(-1)! < 2e-4 * 1.01, `last ${all.at(-1)}`);
  // Past the end (more steps than planned) it stays at the floor.
  assertClose([learningRate(500, cfg)], [2e-4], { atol: 1e-15 });
});

Deno.test("learning rate: linear decay and a custom floor", () => {
  const got = lrs({ lr: 1, steps: 5, schedule: "linear", minRatio: 0 });
  assertClose(got, [1, 0.8, 0.6, 0.4, 0.2], { atol: 1e-12 });
  const floor = lrs({ lr: 1, steps: 4, schedule: "linear" });
  assertClose(floor, [1, 0.775, 0.55, 0.325], { atol: 1e-12 });
});

Deno.test("learning rate: one step, no warm-up, is the peak; bad input is named", () => {
  assertEquals(learningRate(0, { lr: 0.01, steps: 1 }), 0.01);
  assertThrows(() => learningRate(-1, { lr: 1, steps: 3 }), /non-negative integer/);
  assertThrows(
    // deno-lint-ignore no-explicit-any
    () => learningRate(0, { lr: 1, steps: 3, schedule: "step" as any }),
    /unknown schedule "step"/,
  );
});
