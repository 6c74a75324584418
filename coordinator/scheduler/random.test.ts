import { assert, assertEquals, assertThrows, rng } from "../../tests/util.ts";
import { budgetCount, initialState, type SelectionConfig } from "./policy.ts";
import { random } from "./random.ts";
import { costs260k, MODULES56, runSchedule } from "./testing.ts";

const CONFIG: SelectionConfig = { warmup: 10, period: 8, probeFraction: 0.25, probeWindow: 3 };

const run = (seed: number, rho = 0.25) =>
  runSchedule({
    policy: random,
    modules: MODULES56,
    config: CONFIG,
    totalSteps: 60,
    budget: () => ({ rho }),
    score: () => 1,
    seed,
  });

Deno.test("random: warm-up keeps all, then a fresh subset of ⌈ρ·N⌉ every period", () => {
  const K = budgetCount(0.25, MODULES56.length);
  const warm = random.decide({
    step: 5,
    totalSteps: 60,
    modules: MODULES56,
    scores: new Map(),
    state: initialState(MODULES56),
    budget: { rho: 0.25 },
    rng: rng(1),
    config: CONFIG,
  });
  assertEquals(warm.active, MODULES56);
  const { trace } = run(1);
  const decisions = trace.filter((t) => (t.step - 10) % 8 === 0 && t.step < 60);
  assertEquals(decisions.map((t) => t.step), [10, 18, 26, 34, 42, 50, 58]);
  for (const t of decisions) {
    assertEquals(t.decision.active.length, K);
    assertEquals(t.decision.probing, []);
  }
  for (let i = 1; i < decisions.length; i++) {
    assert(
      JSON.stringify(decisions[i].decision.active) !==
        JSON.stringify(decisions[i - 1].decision.active),
      `re-drawn at ${decisions[i].step}`,
    );
    const before = new Set(decisions[i - 1].decision.active);
    const now = new Set(decisions[i].decision.active);
    assertEquals(decisions[i].decision.killed, [...before].filter((m) => !now.has(m)));
    assertEquals(decisions[i].decision.revived, [...now].filter((m) => !before.has(m)));
  }
  // Probe ends do not change the set.
  for (const t of trace.filter((t) => (t.step - 10) % 8 === 3)) {
    assertEquals(t.decision.killed.length + t.decision.revived.length, 0);
  }
});

Deno.test("random: seeded, and needs a fraction budget", () => {
  assertEquals(run(7).state.history, run(7).state.history);
  assert(
    JSON.stringify(run(7).state.history) !== JSON.stringify(run(8).state.history),
    "another seed, other draws",
  );
  assertThrows(() =>
    random.decide({
      step: 10,
      totalSteps: 60,
      modules: MODULES56,
      scores: new Map(),
      state: initialState(MODULES56),
      budget: { tau: 0.5 },
      rng: rng(1),
      config: CONFIG,
    }), /random: needs a fraction budget/);
});

Deno.test("random: a cost budget draws subsets whose cost fits ρ·Σcost", () => {
  const costs = costs260k(MODULES56);
  const all = [...costs.values()].reduce((a, b) => a + b, 0);
  const { trace } = runSchedule({
    policy: random,
    modules: MODULES56,
    config: CONFIG,
    totalSteps: 60,
    budget: () => ({ rho: 0.125, over: "cost" }),
    score: () => 1,
    seed: 2,
    costs,
  });
  const sets = trace.filter((t) => t.step >= 10 && t.step < 60).map((t) => t.decision.active);
  assert(sets.length >= 6);
  for (const s of sets) {
    const used = s.reduce((a, m) => a + costs.get(m)!, 0);
    assert(used <= 0.125 * all, `cost ${used} over ${0.125 * all}`);
    assert(MODULES56.every((m) => s.includes(m) || used + costs.get(m)! > 0.125 * all), "greedy");
  }
  assert(new Set(sets.map((s) => s.join())).size > 1, "re-drawn");
});
