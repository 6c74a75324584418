import { assert, assertEquals, assertThrows, rng } from "../../tests/util.ts";
import { kr } from "./kr.ts";
import {
  budgetCount,
  type DecisionInput,
  initialState,
  type SchedulerState,
  type SelectionConfig,
} from "./policy.ts";
import { costs260k, MODULES56, runSchedule } from "./testing.ts";

const CONFIG: SelectionConfig = { warmup: 10, period: 8, probeFraction: 0.25, probeWindow: 3 };
const MODS = ["a", "b", "c", "d", "e", "f", "g", "h"];

function input(over: Partial<DecisionInput>): DecisionInput {
  return {
    step: 10,
    totalSteps: 100,
    modules: MODS,
    scores: new Map(MODS.map((m, i) => [m, i + 1])),
    state: initialState(MODS),
    budget: { rho: 0.5 },
    rng: rng(1),
    config: CONFIG,
    ...over,
  };
}

Deno.test("kr: warm-up and steps between events keep the current set", () => {
  for (const step of [1, 5, 9]) {
    const d = kr.decide(input({ step, scores: new Map() }));
    assertEquals([d.active, d.probing, d.killed, d.revived], [MODS, [], [], []]);
  }
  const st: SchedulerState = { ...initialState(MODS), active: ["a", "b"] };
  const d = kr.decide(input({ step: 15, state: st, scores: new Map() }));
  assertEquals(d.active, ["a", "b"]);
});

Deno.test("kr: a decision kills the lowest scores down to ⌈ρ·N⌉ and probes the killed", () => {
  const scores = new Map([["a", 5], ["b", 0.1], ["c", 3], ["d", 0.2], ["e", 9], ["f", 1], [
    "g",
    0.3,
  ], ["h", 4]]);
  const d = kr.decide(input({ scores, config: { ...CONFIG, probeFraction: 0 } }));
  assertEquals(d.active, ["a", "c", "e", "h"]);
  assertEquals(d.killed, ["b", "d", "f", "g"]);
  assertEquals(d.probing, []);
  assertEquals(d.events.filter((e) => e.kind === "kill").map((e) => e.score), [0.1, 0.2, 1, 0.3]);
  // With q = 0.25 of 4 killed: one probe.
  const p = kr.decide(input({ scores }));
  assertEquals(p.active, ["a", "c", "e", "h"]);
  assertEquals(p.probing.length, 1);
  assert(["b", "d", "f", "g"].includes(p.probing[0]), "the probe is a killed module");
  assertEquals(p.revived, p.probing);
});

Deno.test("kr: threshold mode kills c < τ·median(c_active), never everything", () => {
  const scores = new Map(MODS.map((m, i) => [m, [1, 2, 3, 4, 5, 6, 7, 8][i]]));
  const noProbe = { ...CONFIG, probeFraction: 0 };
  // median 4.5, τ = 0.5 → cut 2.25: a and b go.
  const d = kr.decide(input({ scores, budget: { tau: 0.5 }, config: noProbe }));
  assertEquals(d.killed, ["a", "b"]);
  assertEquals(d.active.length, 6);
  const none = kr.decide(input({ scores, budget: { tau: 100 }, config: noProbe }));
  assertEquals(none.active, ["h"]);
  assertThrows(() => kr.decide(input({ scores, budget: { tau: -1 } })), /τ must be ≥ 0/);
});

Deno.test("kr: revive prefers the longest-killed modules", () => {
  const state: SchedulerState = {
    ...initialState(MODS),
    active: ["a", "b"],
    killedSince: { c: 50, d: 10, e: 42, f: 18, g: 26, h: 10 },
  };
  const scores = new Map([["a", 1], ["b", 2]]);
  // ρ = 0.25 → keep 2; q = 0.5 of 6 killed → 3 probes: d and h (step 10), then f (18).
  for (let seed = 0; seed < 5; seed++) {
    const d = kr.decide(input({
      step: 58,
      state,
      scores,
      budget: { rho: 0.25 },
      rng: rng(seed),
      config: { ...CONFIG, probeFraction: 0.5 },
    }));
    assertEquals(d.active, ["a", "b"]);
    assertEquals(d.probing, ["d", "f", "h"]);
  }
});

/** Four active modules and two probes since step 18; g, h killed at 10. */
function probeEnd(): SchedulerState {
  return {
    ...initialState(MODS),
    active: ["a", "b", "c", "d"],
    probing: ["e", "f"],
    probeStart: 18,
    killedSince: { g: 10, h: 10 },
  };
}

Deno.test("kr: at a probe end probes compete with the active modules and the top stay", () => {
  const state = probeEnd();
  const scores = new Map([["a", 5], ["b", 0.5], ["c", 4], ["d", 3], ["e", 6], ["f", 0.1]]);
  const d = kr.decide(input({ step: 21, state, scores }));
  assertEquals(d.active, ["a", "c", "d", "e"]);
  assertEquals(d.killed, ["b", "f"]);
  assertEquals(d.probing, [], "no new probes before the next decision");
  const kinds = Object.fromEntries(d.events.map((e) => [e.module, e.kind]));
  assertEquals(kinds, { b: "kill", e: "promote", f: "drop" });
  // A probe with no score is an error a person can act on.
  const missing = new Map(scores);
  missing.delete("e");
  assertThrows(
    () => kr.decide(input({ step: 21, state, scores: missing })),
    /kr: no finite score for module e at step 21/,
  );
});

Deno.test("kr: with a margin a probe displaces an active module only by beating it by the margin", () => {
  const state = probeEnd();
  // The weakest active modules are b = 2 and d = 2.2; e beats b by ×1.2, f by ×1.6.
  const scores = new Map([["a", 5], ["b", 2], ["c", 4], ["d", 2.2], ["e", 2.4], ["f", 3.2]]);
  const at = (margin: number | undefined) =>
    kr.decide(input({ step: 21, state, scores, config: { ...CONFIG, margin } }));
  // No margin: the top four by raw score, a 5, c 4, f 3.2, e 2.4 (d and b go).
  assertEquals(at(undefined).active, ["a", "c", "e", "f"]);
  assertEquals(at(1).active, ["a", "c", "e", "f"]);
  // ×1.25: f (3.2/1.25 = 2.56) still displaces the weakest, b; e (1.92) displaces nothing.
  const mid = at(1.25);
  assertEquals(mid.active, ["a", "c", "d", "f"]);
  assertEquals(mid.killed, ["b", "e"]);
  const kinds = Object.fromEntries(mid.events.map((e) => [e.module, e.kind]));
  assertEquals(kinds, { b: "kill", e: "drop", f: "promote" });
  assertEquals(mid.events.find((e) => e.module === "f")!.score, 3.2, "events keep the raw score");
  // ×1.75: neither probe clears the weakest active module; the active set stays.
  const high = at(1.75);
  assertEquals(high.active, ["a", "b", "c", "d"]);
  assertEquals(high.killed, ["e", "f"]);
  assert(high.events.every((e) => e.kind === "drop"), "only the probes move");
});

Deno.test("kr: the margin leaves the first prune and runs without probes unchanged", () => {
  const run = (margin: number) =>
    runSchedule({
      policy: kr,
      modules: MODULES56,
      config: { ...CONFIG, probeFraction: 0, margin },
      totalSteps: 60,
      budget: () => ({ rho: 0.25 }),
      score: (m, from, to) => (to - from) * (1 + (MODULES56.indexOf(m) % 7)),
      seed: 2,
    }).state.history;
  assertEquals(run(1.5), run(1));
  // Scores that reshuffle every window: without a margin probes win places, with one fewer.
  const probed = (margin: number) =>
    runSchedule({
      policy: kr,
      modules: MODULES56,
      config: { ...CONFIG, margin },
      totalSteps: 60,
      budget: () => ({ rho: 0.25 }),
      score: (m, from, to) => (to - from) * (1 + ((MODULES56.indexOf(m) * 31 + from * 17) % 13)),
      seed: 2,
    }).trace;
  const promotions = (margin: number) =>
    probed(margin).flatMap((t) => t.decision.events).filter((e) => e.kind === "promote").length;
  assert(promotions(1) > 0, "without a margin some probes win");
  assert(promotions(1.5) < promotions(1), `${promotions(1.5)} ≥ ${promotions(1)}`);
  assertEquals(promotions(1e9), 0, "a margin no probe can clear freezes the first prune's set");
});

Deno.test("kr: a margin below 1 or not finite is refused", () => {
  for (const margin of [0.9, 0, NaN, Infinity]) {
    assertThrows(
      () => kr.decide(input({ config: { ...CONFIG, margin } })),
      /margin must be a finite number ≥ 1/,
    );
  }
});

Deno.test("kr: the budget holds at every event of a run, probes on top", () => {
  const N = MODULES56.length, rho = 0.25, K = budgetCount(rho, N);
  const { trace } = runSchedule({
    policy: kr,
    modules: MODULES56,
    config: CONFIG,
    totalSteps: 60,
    budget: () => ({ rho }),
    score: (m, from, to) => (to - from) * (1 + (MODULES56.indexOf(m) % 5)),
    seed: 3,
  });
  assert(trace.length >= 10, `${trace.length} events`);
  for (const t of trace) {
    assertEquals(t.decision.active.length, K, `active at ${t.step}`);
    const probes = t.step === 60 || t.step % 8 !== 2 ? 0 : Math.ceil(0.25 * (N - K));
    assertEquals(t.decision.probing.length, probes, `probes at ${t.step}`);
    assertEquals(new Set([...t.decision.active, ...t.decision.probing]).size, K + probes);
  }
});

Deno.test("kr: a budget change (re-tiering) takes effect at the next decision", () => {
  // Re-tiered at step 22 (after the probe end at 21) to C, at 30 to A.
  const N = MODULES56.length;
  const budgetAt = (s: number) => ({ rho: s < 22 ? 0.25 : s < 30 ? 0.125 : 0.5 });
  const { trace } = runSchedule({
    policy: kr,
    modules: MODULES56,
    config: CONFIG,
    totalSteps: 50,
    budget: budgetAt,
    score: (m) => 1 + MODULES56.indexOf(m),
    seed: 9,
  });
  const activeAt = (s: number) => trace.filter((t) => t.step <= s).at(-1)!.decision.active.length;
  assertEquals(activeAt(18), budgetCount(0.25, N));
  assertEquals(activeAt(21), budgetCount(0.25, N), "steps 18–25 keep the old budget's set");
  assertEquals(activeAt(26), budgetCount(0.125, N), "shrinks at the decision after re-tiering");
  assertEquals(activeAt(34), budgetCount(0.5, N), "grows at the next one");
  const grown = trace.find((t) => t.step === 34)!.decision;
  assert(grown.events.some((e) => e.kind === "revive"), "growth revives killed modules outright");
});

Deno.test("kr: the same seed gives the same run, another seed other probes", () => {
  const run = (seed: number) =>
    runSchedule({
      policy: kr,
      modules: MODULES56,
      config: CONFIG,
      totalSteps: 60,
      budget: () => ({ rho: 0.25 }),
      score: () => 1,
      seed,
    }).state.history;
  assertEquals(run(4), run(4));
  assert(JSON.stringify(run(4)) !== JSON.stringify(run(5)), "tie-breaks follow the rng");
});

Deno.test("kr: a cost budget keeps the kept modules' summed cost under ρ·Σcost", () => {
  const costs = costs260k(MODULES56);
  const all = [...costs.values()].reduce((a, b) => a + b, 0);
  // The big MLP modules score highest: by count they would fill the budget; by cost fewer fit.
  const score = (m: string) => (m.endsWith("gate") || m.endsWith("up") ? 10 : 1) + m.length / 100;
  const { trace } = runSchedule({
    policy: kr,
    modules: MODULES56,
    config: { ...CONFIG, probeFraction: 0 },
    totalSteps: 40,
    budget: () => ({ rho: 0.125, over: "cost" }),
    score,
    seed: 3,
    costs,
  });
  const first = trace.find((t) => t.step === 10)!;
  const kept = first.decision.active;
  const used = kept.reduce((s, m) => s + costs.get(m)!, 0);
  assert(used <= 0.125 * all, `kept cost ${used} over ${0.125 * all}`);
  assert(kept.length < budgetCount(0.125, MODULES56.length), "the budget bought fewer big modules");
  // ⌊1156/236⌋ = 4 of the top-scoring MLP modules, then a cheaper one in the room left.
  assertEquals(kept.filter((m) => m.endsWith("gate") || m.endsWith("up")).length, 4);
  // Greedy fill: nothing left out would still fit.
  const room = 0.125 * all - used;
  assert(MODULES56.every((m) => kept.includes(m) || costs.get(m)! > room));
  assertEquals(first.state.history.at(-1)!.keep, null);
  for (const t of trace) {
    const c = t.state.active.reduce((s, m) => s + costs.get(m)!, 0);
    assert(c <= 0.125 * all || t.step < 10, `step ${t.step}: cost ${c}`);
  }
});
