/**
 * A synthetic run: 56 modules, 8 truly important (their parameters change faster). Four are
 * important from the start; four bloom late, after the warm-up, so one-shot pruning kills them.
 * Kill and Revive finds them through its probes; a random subset does not systematically.
 */
import { assert, rng } from "../../tests/util.ts";
import { kr } from "./kr.ts";
import { oneshot } from "./oneshot.ts";
import type { SelectionConfig, SelectionPolicy } from "./policy.ts";
import { random } from "./random.ts";
import { MODULES56, runSchedule } from "./testing.ts";

const EARLY = ["0.q", "1.v", "3.down", "6.o"];
const LATE = ["2.k", "4.up", "5.gate", "7.q"];
const IMPORTANT = new Set([...EARLY, ...LATE]);
const BLOOM = 30;
const CONFIG: SelectionConfig = { warmup: 20, period: 10, probeFraction: 0.25, probeWindow: 4 };

/** Per-step change rate: important 1, late bloomers 0.1 before BLOOM, the rest 0.1–0.5. */
function rate(m: string, t: number): number {
  if (EARLY.includes(m)) return 1;
  if (LATE.includes(m)) return t > BLOOM ? 1 : 0.1;
  return 0.1 + 0.4 * ((MODULES56.indexOf(m) * 37) % 56) / 56;
}

function simulate(policy: SelectionPolicy, seed: number) {
  const noise = rng(1000 + seed);
  return runSchedule({
    policy,
    modules: MODULES56,
    config: CONFIG,
    totalSteps: 120,
    budget: () => ({ rho: 0.25 }),
    score: (m, from, to) => {
      let c = 0;
      for (let t = from + 1; t <= to; t++) c += rate(m, t);
      return c * (0.8 + 0.4 * noise());
    },
    seed,
  });
}

const recall = (active: string[]) => active.filter((m) => IMPORTANT.has(m)).length;

Deno.test("simulation: kr recovers the important modules, late bloomers included", () => {
  for (let seed = 1; seed <= 5; seed++) {
    const { state, trace } = simulate(kr, seed);
    const got = recall(state.active);
    assert(got >= 7, `seed ${seed}: kr recall ${got}/8 at the end`);
    // And it holds them: recall ≥ 7/8 at every event after a few periods.
    for (const t of trace.filter((t) => t.step >= 70)) {
      assert(recall(t.decision.active) >= 7, `seed ${seed}: recall at ${t.step}`);
    }
  }
});

Deno.test("simulation: random and oneshot do not recover them", () => {
  let randomSum = 0, randomN = 0;
  for (let seed = 1; seed <= 5; seed++) {
    for (const t of simulate(random, seed).trace.filter((t) => t.step >= 40)) {
      randomSum += recall(t.decision.active);
      randomN++;
    }
    const one = recall(simulate(oneshot, seed).state.active);
    assert(one <= 5, `seed ${seed}: oneshot recall ${one}/8 should miss the late bloomers`);
  }
  const mean = randomSum / randomN;
  // Expected 8·14/56 = 2.
  assert(mean < 3.5, `random mean recall ${mean.toFixed(2)}/8`);
});
