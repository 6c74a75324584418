import { assertEquals, assertThrows } from "../../tests/util.ts";
import { type KrOptions, selectionFromOptions } from "./options.ts";

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
  assertEquals(s.score, "change");
  assertEquals(s.config, { warmup: 20, period: 25, probeFraction: 0.25, probeWindow: 25 });
  assertEquals([s.budget(0.5), s.budget(0.125)], [{ rho: 0.5 }, { rho: 0.125 }]);
  const o = selectionFromOptions(
    { ...BASE, warmup: 5, period: 10, probe: 4, score: "effective", budget: 0.3, export: "all" },
    RUN,
  );
  assertEquals(o.config, { warmup: 5, period: 10, probeFraction: 0.25, probeWindow: 4 });
  assertEquals([o.score, o.exportModules], ["effective", "all"]);
  assertEquals(o.budget(0.5), { rho: 0.3 });
  const t = selectionFromOptions({ ...BASE, mode: "threshold", tau: 0.5 }, RUN);
  assertEquals(t.budget(0.5), { tau: 0.5 });
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
});
