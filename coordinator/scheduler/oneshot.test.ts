import { assertEquals } from "../../tests/util.ts";
import { oneshot } from "./oneshot.ts";
import { budgetCount, type SelectionConfig } from "./policy.ts";
import { MODULES56, runSchedule } from "./testing.ts";

const CONFIG: SelectionConfig = { warmup: 10, period: 8, probeFraction: 0.25, probeWindow: 3 };
const N = MODULES56.length;

Deno.test("oneshot: prunes the lowest once after the warm-up and never revives", () => {
  // Scores change every window so a re-ranking would show.
  const { trace, state } = runSchedule({
    policy: oneshot,
    modules: MODULES56,
    config: CONFIG,
    totalSteps: 60,
    budget: () => ({ rho: 0.25 }),
    score: (m, _from, to) => ((MODULES56.indexOf(m) * 7 + to * 13) % 56) + 1,
    seed: 1,
  });
  const first = trace.find((t) => t.step === 10)!;
  const K = budgetCount(0.25, N);
  assertEquals(first.decision.active.length, K);
  const ranked = [...first.scores].sort((a, b) => b[1] - a[1]).slice(0, K).map(([m]) => m);
  assertEquals(first.decision.active, MODULES56.filter((m) => ranked.includes(m)));
  for (const t of trace.filter((t) => t.step > 10)) {
    assertEquals(t.decision.active, first.decision.active, `unchanged at ${t.step}`);
    assertEquals(t.decision.revived, []);
    assertEquals(t.decision.probing, []);
  }
  assertEquals(state.history.length, 1);
});

Deno.test("oneshot: a smaller budget prunes further at the next decision, a larger one revives nothing", () => {
  const { trace } = runSchedule({
    policy: oneshot,
    modules: MODULES56,
    config: CONFIG,
    totalSteps: 60,
    budget: (s) => ({ rho: s < 20 ? 0.25 : s < 40 ? 0.125 : 1 }),
    score: (m) => MODULES56.indexOf(m) + 1,
    seed: 1,
  });
  const activeAt = (s: number) => trace.find((t) => t.step === s)!.decision.active;
  assertEquals(activeAt(18).length, budgetCount(0.25, N));
  assertEquals(activeAt(26), MODULES56.slice(N - budgetCount(0.125, N)));
  assertEquals(activeAt(42), activeAt(26));
  assertEquals(trace.flatMap((t) => t.decision.revived), []);
});

Deno.test("oneshot: threshold mode prunes once", () => {
  const { trace } = runSchedule({
    policy: oneshot,
    modules: MODULES56,
    config: CONFIG,
    totalSteps: 40,
    budget: () => ({ tau: 1 }),
    score: (m) => MODULES56.indexOf(m) + 1,
    seed: 1,
  });
  // median of 1…56 is 28.5: 28 modules stay, and stay.
  for (const t of trace) assertEquals(t.decision.active, MODULES56.slice(28));
});
