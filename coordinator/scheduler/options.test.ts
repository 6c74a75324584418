import { assertEquals, assertThrows } from "../../tests/util.ts";
import { defaultLrScale, type KrOptions, selectionFromOptions } from "./options.ts";
import { jobSpecSchema } from "../schemas.ts";

const BASE: KrOptions = {
  policy: "kr",
  period: null,
  probe: null,
  revive_fraction: 0.25,
  mode: "topk",
  tau: null,
  export: "active",
};
const RUN = { totalSteps: 200, stepsPerPass: 25 };

Deno.test("selectionFromOptions: defaults, tier budget, overrides", () => {
  const s = selectionFromOptions(BASE, RUN);
  assertEquals(s.policy.name, "kr");
  assertEquals(s.score, "effective");
  // Warm-up 5% of 200; one pass (25) is shorter than 20% of the run; probe ⅛ of the period.
  assertEquals(s.config, { warmup: 10, period: 25, probeFraction: 0.25, probeWindow: 3 });
  assertEquals(s.lrScale, 2);
  // A count budget (the default) is written without its unit.
  assertEquals([s.budget(0.5), s.budget(0.125)], [{ rho: 0.5 }, { rho: 0.125 }]);
  // A pass longer than the run: the period is 20% of it; q defaults to 0.1.
  const long = selectionFromOptions(
    { ...BASE, revive_fraction: undefined },
    { totalSteps: 200, stepsPerPass: 1200 },
  );
  assertEquals(long.config, { warmup: 10, period: 40, probeFraction: 0.1, probeWindow: 5 });
  assertEquals(selectionFromOptions({ ...BASE, policy: "all" }, RUN).lrScale, 1);
  const cost = selectionFromOptions({ ...BASE, budget_over: "cost", lr_scale: 1 }, RUN);
  assertEquals([cost.budget(0.25), cost.lrScale], [{ rho: 0.25, over: "cost" }, 1]);
  const o = selectionFromOptions(
    { ...BASE, warmup: 5, period: 10, probe: 4, score: "effective", budget: 0.3, export: "all" },
    RUN,
  );
  assertEquals(o.config, { warmup: 5, period: 10, probeFraction: 0.25, probeWindow: 4 });
  assertEquals([o.score, o.exportModules], ["effective", "all"]);
  assertEquals(o.budget(0.5), { rho: 0.3 });
  // Hysteresis: a margin other than 1 reaches the policy's config.
  assertEquals(selectionFromOptions({ ...BASE, margin: 1.25 }, RUN).config.margin, 1.25);
  const t = selectionFromOptions({ ...BASE, mode: "threshold", tau: 0.5 }, RUN);
  assertEquals(t.budget(0.5), { tau: 0.5 });
  // Rank reallocation gives the killed parameters back: the lr is not doubled unless asked.
  const grown = selectionFromOptions({ ...BASE, rank_scale: "budget" }, RUN);
  assertEquals([grown.rankScale, grown.lrScale], ["budget", 1]);
  assertEquals(selectionFromOptions({ ...BASE, rank_scale: 2, lr_scale: 3 }, RUN).lrScale, 3);
  assertEquals([defaultLrScale(undefined), defaultLrScale(1), defaultLrScale(4)], [2, 2, 1]);
});

Deno.test("job schema: kr.lr_scale defaults to 2, or 1 with rank reallocation", () => {
  const DEVICE = "dev_0123456789abcdef";
  const job = (kr: Record<string, unknown>) =>
    jobSpecSchema().parse({ base_model: "stories260K", devices: [DEVICE], kr }).kr;
  assertEquals([job({ policy: "kr" }).lr_scale, job({ policy: "kr" }).rank_scale], [2, 1]);
  assertEquals(job({ policy: "kr", rank_scale: "budget" }).lr_scale, 1);
  assertEquals(job({ policy: "kr", rank_scale: "budget", lr_scale: 1.5 }).lr_scale, 1.5);
});

Deno.test("selectionFromOptions: errors a person can act on", () => {
  assertThrows(() => selectionFromOptions({ ...BASE, policy: "best" }, RUN), /unknown module-/);
  assertThrows(() => selectionFromOptions({ ...BASE, score: "fisher" }, RUN), /choose from change/);
  assertThrows(() => selectionFromOptions({ ...BASE, mode: "threshold" }, RUN), /needs tau/);
  assertThrows(
    () => selectionFromOptions({ ...BASE, policy: "random", mode: "threshold", tau: 1 }, RUN),
    /random policy needs mode topk/,
  );
  assertThrows(() => selectionFromOptions({ ...BASE, budget: 2 }, RUN), /ρ must be in/);
  assertThrows(() => selectionFromOptions({ ...BASE, period: 0 }, RUN), /period must be/);
  assertThrows(() => selectionFromOptions({ ...BASE, lr_scale: 0 }, RUN), /lr_scale must be a/);
  assertThrows(() => selectionFromOptions({ ...BASE, rank_scale: 0.5 }, RUN), /rank_scale must/);
  assertThrows(
    () => selectionFromOptions({ ...BASE, mode: "threshold", tau: 0.5, rank_scale: "budget" }, RUN),
    /needs a fraction budget/,
  );
  assertThrows(() => selectionFromOptions({ ...BASE, margin: 0.5 }, RUN), /margin must be a/);
  assertThrows(
    // deno-lint-ignore no-explicit-any
    () => selectionFromOptions({ ...BASE, budget_over: "flops" as any }, RUN),
    /budget_over must be "count" or "cost"/,
  );
});
