import { assert, assertEquals } from "../../tests/util.ts";
import {
  buildGrid,
  EXPERIMENT_JOB,
  fullGridOptions,
  krOptions,
  quickGridOptions,
  quickShape,
  runId,
  TASKS,
} from "./grid.ts";

/** Distinct values, sorted (assertEquals compares JSON, and Sets print as {}). */
const uniq = <T>(xs: T[]): T[] => [...new Set(xs)].sort();

Deno.test("full grid: 3 tasks × 3 seeds × (all at 4 lengths, 5 policies × 3 budgets, kr bf16, kr and oneshot with rank reallocation × 3 budgets)", () => {
  const runs = buildGrid(fullGridOptions());
  assertEquals(runs.length, 3 * 3 * (4 + 5 * 3 + 1 + 2 * 3));
  assertEquals(new Set(runs.map(runId)).size, runs.length, "ids unique");
  assertEquals(uniq(runs.map((r) => r.task)), TASKS.map((t) => t.name).sort());
  const ranked = runs.filter((r) => r.rank === "budget");
  assertEquals(ranked.length, 3 * 3 * 2 * 3);
  assertEquals(uniq(ranked.map((r) => r.policy)), ["kr", "oneshot"]);
  assert(ranked.every((r) => r.score === EXPERIMENT_JOB.defaultScore && r.codec === "f32"));
  assertEquals(krOptions(ranked[0], EXPERIMENT_JOB)!.rank_scale, "budget");
  const kr = runs.filter((r) => r.policy === "kr" && r.codec === "f32" && !r.rank);
  assertEquals(uniq(kr.map((r) => r.score)), ["change", "effective", "sensitivity"]);
  assertEquals(uniq(kr.map((r) => r.budget)), [0.125, 0.25, 0.5]);
  const bf16 = runs.filter((r) => r.codec === "bf16");
  assertEquals(bf16.length, 9, "one per task and seed");
  assert(bf16.every((r) => r.budget === 0.125 && r.score === EXPERIMENT_JOB.defaultScore));
  const all = runs.filter((r) => r.policy === "all");
  assertEquals(all.map((r) => r.steps).slice(0, 4), [200, 50, 100, 150]);
  assert(all.every((r) => r.budget === null && r.score === null));
  assert(runs.filter((r) => r.policy === "random").every((r) => r.score === null));
  assert(
    runs.filter((r) => r.policy === "oneshot").every((r) =>
      r.score === EXPERIMENT_JOB.defaultScore
    ),
  );
  // `all` of a task and seed comes before the runs compared against it.
  assertEquals(runs[0].policy, "all");
});

Deno.test("quick grid: one task, one seed, one budget, a handful of runs of a shorter job", () => {
  const shape = quickShape();
  const runs = buildGrid(quickGridOptions(shape));
  assertEquals(runs.map((r) => `${r.policy}/${r.codec}/${r.steps}${r.rank ? "/rank" : ""}`), [
    "all/f32/30",
    "all/f32/8",
    "all/f32/15",
    "kr/f32/30",
    "random/f32/30",
    "oneshot/f32/30",
    "kr/bf16/30",
    "kr/f32/30/rank",
    "oneshot/f32/30/rank",
  ]);
  assert(shape.steps < EXPERIMENT_JOB.steps && shape.seqLen < EXPERIMENT_JOB.seqLen);
});

Deno.test("krOptions: null for all, the budget and the shared schedule otherwise", () => {
  const spec = {
    task: "sst2",
    policy: "kr" as const,
    score: "effective" as const,
    budget: 0.25,
    seed: 1,
    steps: 200,
    codec: "f32" as const,
  };
  assertEquals(
    krOptions({ ...spec, policy: "all", score: null, budget: null }, EXPERIMENT_JOB),
    null,
  );
  const o = krOptions(spec, EXPERIMENT_JOB)!;
  assertEquals(o.rank_scale, undefined, "the job's rank unless the spec asks");
  assertEquals([o.policy, o.score, o.budget, o.period], [
    "kr",
    "effective",
    0.25,
    EXPERIMENT_JOB.period,
  ]);
  assertEquals(
    krOptions({ ...spec, policy: "random", score: null }, EXPERIMENT_JOB)!.score,
    EXPERIMENT_JOB.defaultScore,
  );
});
