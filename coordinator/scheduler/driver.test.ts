import { assert, assertEquals, assertThrows } from "../../tests/util.ts";
import { SelectionDriver, selectionSeed, type SelectionSpec } from "./driver.ts";
import type { KrOptions } from "./options.ts";
import { budgetCount } from "./policy.ts";
import { MODULES56 } from "./testing.ts";

const KR: KrOptions = {
  policy: "kr",
  score: "change",
  warmup: 4,
  period: 4,
  probe: 2,
  revive_fraction: 0.25,
  mode: "topk",
  tau: null,
  export: "active",
};
const spec = (kr: Partial<KrOptions> = {}, tierRho = 0.25): SelectionSpec => ({
  kr: { ...KR, ...kr },
  totalSteps: 20,
  stepsPerPass: 5,
  seed: 7,
  tier: "B",
  tierRho,
});

/** c_i of every trained module: a fixed ranking by module index. */
function scoresFor(d: SelectionDriver, step: number) {
  const values: Record<string, number> = {};
  for (const m of d.trained) values[m] = 1 + ((MODULES56.indexOf(m) * 17) % 56);
  return { step, score: "change" as const, values };
}

function runTo(d: SelectionDriver, last: number, retier?: { at: number; rho: number }) {
  const outcomes = [];
  for (let s = 1; s <= last; s++) {
    if (retier && s === retier.at) d.setTier("A", retier.rho);
    if (d.reportAt === s) d.takeScores(scoresFor(d, s));
    const r = d.stepEnded(s);
    if (r) outcomes.push(r);
  }
  return outcomes;
}

Deno.test("driver: opens with every module and reportAt = warm-up; events at decisions and probe ends", () => {
  const d = new SelectionDriver(spec(), MODULES56, "dev_a");
  const start = d.start();
  assertEquals(start.active, MODULES56);
  assertEquals([start.step, start.reportAt, start.tier, start.score], [0, 4, "B", "change"]);
  const out = runTo(d, 20);
  // warm-up 4, period 4, probe window 2: decisions at 4, 8, …, 16, probe ends 2 steps later; the
  // final step 20 is no event since no probe runs then.
  assertEquals(out.map((o) => o.outcome.step), [4, 6, 8, 10, 12, 14, 16, 18]);
  const keep = budgetCount(0.25, 56);
  const first = out[0];
  assertEquals(first.outcome.events.filter((e) => e.kind === "kill").length, 56 - keep);
  assertEquals(first.select.active.length, keep);
  assertEquals(first.select.probing.length, Math.ceil(0.25 * (56 - keep)));
  assertEquals(first.select.reportAt, 6);
  assert(first.outcome.events.every((e) => e.step === 4));
  // The warm-up trains at the job's lr; from the first decision on, at lr × lr_scale.
  assertEquals([start.lr_scale, first.select.lr_scale], [1, 2]);
  const plain = new SelectionDriver(spec({ lr_scale: 1 }), MODULES56, "dev_a");
  plain.start();
  assertEquals(runTo(plain, 4)[0].select.lr_scale, 1);
  assertEquals(d.events.length, out.reduce((a, o) => a + o.outcome.events.length, 0));
  // After the final ranking nothing is reported any more.
  assertEquals(out.at(-1)!.select.reportAt, null);
  assertEquals(out.at(-1)!.select.probing, []);
});

Deno.test("driver: rank reallocation asks the kept modules to grow from the first decision on", () => {
  // Equal costs: the 14 of 56 modules kept at ρ = 0.25 hold all's parameters at rank 8 · 56/14.
  const grow = new SelectionDriver(
    { ...spec({ rank_scale: "budget" }), rank: 8 },
    MODULES56,
    "dev_a",
    new Map(MODULES56.map((m) => [m, 1])),
  );
  assertEquals(grow.start().rank, undefined, "the warm-up trains at the job's rank");
  const out = runTo(grow, 8);
  assertEquals(out[0].select.rank, 32, "as many parameters as all: 8 · 56 / 14");
  assert(out.every((o) => o.select.rank === 32), "every later decision repeats it");
  // Unequal costs: r · Σ_all cost / Σ_active cost, rounded down.
  const costs = new Map(MODULES56.map((m, i) => [m, 1 + (i % 3)]));
  const costly = new SelectionDriver(
    { ...spec({ rank_scale: "budget" }), rank: 8 },
    MODULES56,
    "dev_a",
    costs,
  );
  costly.start();
  const first = runTo(costly, 4)[0].select;
  const sum = (ms: string[]) => ms.reduce((a, m) => a + costs.get(m)!, 0);
  assertEquals(first.rank, Math.floor((8 * sum(MODULES56)) / sum(first.active)));
  const twice = new SelectionDriver({ ...spec({ rank_scale: 2 }), rank: 8 }, MODULES56, "dev_a");
  twice.start();
  assertEquals(runTo(twice, 4)[0].select.rank, 16);
  const plain = new SelectionDriver({ ...spec(), rank: 8 }, MODULES56, "dev_a");
  plain.start();
  assertEquals(runTo(plain, 4)[0].select.rank, undefined, "no growth by default");
  assertThrows(
    () => new SelectionDriver(spec({ rank_scale: 2 }), MODULES56, "dev_a"),
    /needs the job's LoRA rank/,
  );
  assertThrows(
    () => new SelectionDriver({ ...spec({ rank_scale: "budget" }), rank: 8 }, MODULES56, "dev_a"),
    /needs the modules' costs/,
  );
});

Deno.test("driver: a re-tiered device gets its new budget at the next decision", () => {
  const d = new SelectionDriver(spec(), MODULES56, "dev_a");
  d.start();
  const out = runTo(d, 12, { at: 9, rho: 0.5 });
  const at = (s: number) => out.find((o) => o.outcome.step === s)!;
  assertEquals(at(8).outcome.budget, { rho: 0.25 });
  assertEquals(at(8).select.active.length, budgetCount(0.25, 56));
  assertEquals(at(12).outcome.budget, { rho: 0.5 });
  assertEquals(at(12).outcome.tier, "A");
  assertEquals(at(12).select.active.length, budgetCount(0.5, 56));
  // A per-job budget overrides the tier.
  const fixed = new SelectionDriver(spec({ budget: 0.125 }), MODULES56, "dev_a");
  fixed.start();
  const o = runTo(fixed, 8, { at: 5, rho: 0.5 });
  assertEquals(o.at(-1)!.outcome.budget, { rho: 0.125 });
});

Deno.test("driver: scores for untrained or missing modules, the wrong step or score are refused; nothing changes", () => {
  const d = new SelectionDriver(spec(), MODULES56, "dev_a");
  d.start();
  for (let s = 1; s <= 3; s++) assertEquals(d.stepEnded(s), null);
  const good = scoresFor(d, 4);
  const { ["0.q"]: _, ...missing } = good.values;
  assert(/missing: 0\.q/.test(d.checkScores({ ...good, values: missing })!));
  assert(/must report at step 4/.test(d.checkScores({ ...good, step: 5 })!));
  assert(/ranks by "change"/.test(d.checkScores({ ...good, score: "effective" })!));
  assertThrows(() => d.takeScores({ ...good, values: missing }), /missing/);
  assertEquals(d.checkScores(good), null);
  d.takeScores(good);
  const r = d.stepEnded(4)!;
  const killed = r.select.killed[0];
  // Next window: a killed module is not trained, so reporting it is refused.
  const next = scoresFor(d, r.select.reportAt!);
  assert(
    new RegExp(`not trained: ${killed.replace(".", "\\.")}`).test(
      d.checkScores({ ...next, values: { ...next.values, [killed]: 1 } })!,
    ),
  );
  // Without scores at its report step nothing is decided and the device is asked again.
  const before = d.trained;
  const missed = d.stepEnded(r.select.reportAt!)!;
  assert(missed.outcome.missedScores);
  assertEquals(missed.outcome.events, []);
  assertEquals(d.trained, before);
  assert(missed.select.reportAt! > r.select.reportAt!);
});

Deno.test("driver: decisions are reproducible from the job seed and device id, and differ across devices", () => {
  const trace = (device: string) => {
    const d = new SelectionDriver(spec({ policy: "random" }), MODULES56, device);
    d.start();
    return runTo(d, 20).map((o) => o.select.active.join(","));
  };
  assertEquals(trace("dev_a"), trace("dev_a"));
  assert(trace("dev_a").join("|") !== trace("dev_b").join("|"));
  assert(selectionSeed(7, "dev_a") !== selectionSeed(8, "dev_a"));
  assertThrows(() => new SelectionDriver(spec({}, 0), MODULES56, "dev_a"), /ρ must be in/);
});
