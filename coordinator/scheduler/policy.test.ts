import { assertEquals, assertThrows, rng } from "../../tests/util.ts";
import { all, policyByName } from "./mod.ts";
import {
  budgetCount,
  fillBudget,
  initialState,
  keepOf,
  longestKilledFirst,
  median,
  nextState,
  overBudget,
  scheduleAt,
  type SelectionConfig,
} from "./policy.ts";

const CONFIG: SelectionConfig = { warmup: 10, period: 8, probeFraction: 0.25, probeWindow: 3 };

Deno.test("scheduleAt: decisions from the warm-up on, probe ends inside the period, final step", () => {
  const at = (s: number, c = CONFIG, total = 40) => scheduleAt(s, c, total);
  const decisions = [], probeEnds = [];
  for (let s = 0; s <= 40; s++) {
    if (at(s).decision) decisions.push(s);
    if (at(s).probeEnd) probeEnds.push(s);
  }
  assertEquals(decisions, [10, 18, 26, 34]);
  assertEquals(probeEnds, [13, 21, 29, 37]);
  assertEquals(at(40), { decision: false, probeEnd: false, final: true });
  // A window not shorter than the period ends at the next decision: no separate event.
  const long = { ...CONFIG, probeWindow: 8 };
  assertEquals([13, 16, 18].map((s) => at(s, long).probeEnd), [false, false, false]);
  // No decision at step 0 even without a warm-up.
  assertEquals(scheduleAt(0, { ...CONFIG, warmup: 0 }).decision, false);
  assertEquals(scheduleAt(8, { ...CONFIG, warmup: 0 }).decision, true);
  assertThrows(() => scheduleAt(1, { ...CONFIG, period: 0 }), /period must be an integer ≥ 1/);
  assertThrows(() => scheduleAt(1, { ...CONFIG, probeFraction: 2 }), /probeFraction/);
});

Deno.test("budgetCount is ⌈ρ·N⌉ within [1, N]", () => {
  assertEquals(budgetCount(0.125, 56), 7);
  assertEquals(budgetCount(0.25, 56), 14);
  assertEquals(budgetCount(0.1, 30), 3);
  assertEquals(budgetCount(0.3, 7), 3);
  assertEquals(budgetCount(0.001, 7), 1);
  assertEquals(budgetCount(1, 7), 7);
  assertThrows(() => budgetCount(0, 7), /budget ρ must be in \(0, 1\], got 0/);
  assertThrows(() => budgetCount(1.5, 7), /got 1.5/);
});

Deno.test("helpers: median, longest-killed order with seeded tie-breaks", () => {
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 2, 3]), 2.5);
  const since = { a: 5, b: 1, c: 5, d: 3, e: 1 };
  const order = longestKilledFirst(["a", "b", "c", "d", "e"], since, rng(1));
  assertEquals(order.slice(0, 2).sort(), ["b", "e"]);
  assertEquals(order[2], "d");
  assertEquals(longestKilledFirst(["a", "b", "c", "d", "e"], since, rng(1)), order);
  // Across seeds the ties come out both ways.
  const firsts = new Set<string>();
  for (let s = 0; s < 20; s++) firsts.add(longestKilledFirst(["a", "b", "e"], since, rng(s))[0]);
  assertEquals([...firsts].sort(), ["b", "e"]);
});

Deno.test("nextState tracks kill steps, probe start and history", () => {
  const mods = ["a", "b", "c", "d"];
  let st = initialState(mods);
  st = nextState(
    st,
    {
      active: ["a"],
      probing: ["c"],
      killed: ["b", "c", "d"].filter((m) => m !== "c"),
      revived: [],
      events: [],
    },
    10,
    1,
  );
  assertEquals(st.killedSince, { b: 10, d: 10 });
  assertEquals(st.probeStart, 10);
  assertEquals(st.history.length, 1);
  st = nextState(st, { active: ["a"], probing: [], killed: ["c"], revived: [], events: [] }, 13, 1);
  assertEquals(st.killedSince, { b: 10, d: 10, c: 13 });
  assertEquals(st.probeStart, null);
  assertEquals(st.history.map((h) => h.step), [10, 13]);
});

Deno.test("policyByName knows kr, random, oneshot, all; all keeps every module", () => {
  for (const n of ["kr", "random", "oneshot", "all"]) assertEquals(policyByName(n).name, n);
  assertThrows(
    () => policyByName("topk"),
    /unknown module-selection policy "topk"; choose from kr/,
  );
  assertThrows(() => policyByName("toString"), /unknown/);
  const mods = ["a", "b", "c"];
  const d = all.decide({
    step: 18,
    totalSteps: 40,
    modules: mods,
    scores: new Map(),
    state: { ...initialState(mods), active: ["a"], killedSince: { b: 1, c: 1 } },
    budget: { rho: 0.1 },
    rng: rng(1),
    config: CONFIG,
  });
  assertEquals([d.active, d.revived, d.killed], [mods, ["b", "c"], []]);
});

Deno.test("fillBudget: by count ⌈ρ·N⌉ in all, by cost greedy under ρ·Σcost, skipping what no longer fits", () => {
  const modules = ["a", "b", "c", "d"];
  const costs = new Map([["a", 4], ["b", 1], ["c", 2], ["d", 1]]); // Σ = 8
  const input = {
    step: 10,
    totalSteps: 20,
    modules,
    scores: new Map<string, number>(),
    state: initialState(modules),
    budget: { rho: 0.5 },
    rng: rng(1),
    config: CONFIG,
    costs,
  };
  assertEquals(fillBudget(input, { rho: 0.5 }, ["a", "b", "c", "d"]), ["a", "b"]);
  assertEquals(fillBudget(input, { rho: 0.5 }, ["c", "d", "a", "b"], ["x"]), ["c"]);
  // Cap 0.5·8 = 4: "c" (2) fits, "a" (4) no longer does, "b" and "d" (1 each) do.
  assertEquals(fillBudget(input, { rho: 0.5, over: "cost" }, ["c", "a", "b", "d"]), [
    "c",
    "b",
    "d",
  ]);
  // Already used 3 of 4: only a cost-1 module fits.
  assertEquals(fillBudget(input, { rho: 0.5, over: "cost" }, ["a", "c", "b"], ["c", "d"]), ["b"]);
  // Never nothing: the first is kept even when alone it is over the cap (0.25·8 = 2 < 4).
  assertEquals(fillBudget(input, { rho: 0.25, over: "cost" }, ["a", "c", "b"]), ["a"]);
  assertEquals(overBudget(input, { rho: 0.25, over: "cost" }, ["a"]), false);
  assertEquals(overBudget(input, { rho: 0.25, over: "cost" }, ["c", "b"]), true);
  assertEquals(overBudget(input, { rho: 0.5 }, ["c", "b"]), false);
  assertEquals(keepOf({ rho: 0.5, over: "cost" }, 4), null);
  assertThrows(
    () => fillBudget({ ...input, costs: undefined }, { rho: 0.5, over: "cost" }, ["a"]),
    /cost budget needs a positive cost for every module; a has undefined/,
  );
  assertThrows(
    () => fillBudget({ ...input, costs: new Map([["a", 0]]) }, { rho: 0.5, over: "cost" }, ["a"]),
    /a has 0/,
  );
});
