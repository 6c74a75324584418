import { assert, assertEquals } from "../../tests/util.ts";
import {
  allNllAtFlops,
  beatsBaselinesTarget,
  equalFlopsTarget,
  evaluateTargets,
  groupRows,
  type Row,
  savingsOf,
} from "./aggregate.ts";
import { syntheticRow, taskRows } from "./testing.ts";

const near = (a: number, b: number, tol = 1e-9) => Math.abs(a - b) <= tol;
const O = { defaultScore: "change" };

Deno.test("savingsOf: compute (total and LoRA-only), comm and NLL gap against all of the same seed", () => {
  const rows = [...taskRows("t", 1), ...taskRows("t", 2, { device_flops: 1e9 })];
  const kr1 = rows.find((r) => r.policy === "kr" && r.seed === 1)!;
  const s = savingsOf(rows, kr1);
  assert(near(s.computeTotal, 0.53), `total ${s.computeTotal}`);
  assert(near(s.computeLora, 1 - 70 / 600), `lora ${s.computeLora}`);
  assert(near(s.comm, 0.88), `comm ${s.comm}`);
  assert(near(s.nllGap, 2.9 / 2.8 - 1), `gap ${s.nllGap}`);
  // Seed 2's KR used as many FLOPs as all: no compute saving.
  const kr2 = rows.find((r) => r.policy === "kr" && r.seed === 2)!;
  assert(near(savingsOf(rows, kr2).computeTotal, 0));
  // No reference run: NaN, not a made-up number.
  const lonely = syntheticRow({ task: "u", policy: "kr" });
  assert(Number.isNaN(savingsOf([lonely], lonely).comm));
});

Deno.test("groupRows: means over seeds per configuration, savings averaged per seed", () => {
  const rows = [
    ...taskRows("t", 1, { nll_active: 2.9 }),
    ...taskRows("t", 2, { nll_active: 3.1, bytes_up: 2e6, bytes_down: 2e6 }),
  ];
  const groups = groupRows(rows);
  assertEquals(groups.length, 4, "all ×3 lengths + kr");
  const kr = groups.find((g) => g.policy === "kr")!;
  assertEquals(kr.seeds, [1, 2]);
  assert(near(kr.nllActive, 3.0));
  assert(near(kr.savings.comm, (0.88 + 0.98) / 2), `comm ${kr.savings.comm}`);
});

Deno.test("allNllAtFlops: linear between all's runs of different lengths, null outside", () => {
  const rows = taskRows("t", 1);
  assert(near(allNllAtFlops(rows, "t", 1, 500e6)!, 3.0));
  assert(near(allNllAtFlops(rows, "t", 1, 750e6)!, 2.9), "halfway between 3.0 and 2.8");
  assert(near(allNllAtFlops(rows, "t", 1, 470e6)!, 3.3 - 0.3 * 220 / 250));
  assertEquals(allNllAtFlops(rows, "t", 1, 100e6), null, "below the shortest run");
  assertEquals(allNllAtFlops(rows, "t", 1, 2e9), null, "above the full run");
  assertEquals(allNllAtFlops(rows, "t", 2, 500e6), null, "another seed has no curve");
});

Deno.test("evaluateTargets: each target met or not from the measured values", () => {
  const bf16 = (task: string, seed: number, bytes: number) =>
    syntheticRow({
      task,
      seed,
      policy: "kr",
      codec: "bf16",
      bytes_up: bytes,
      bytes_down: bytes,
      device_flops: 470e6,
      device_flops_lora: 70e6,
      nll_active: 2.9,
    });
  const rows = [...taskRows("a", 1), bf16("a", 1, 6e6), ...taskRows("b", 1), bf16("b", 1, 4e6)];
  const t = evaluateTargets(rows, O);
  const by = (needle: string) => t.find((x) => x.name.includes(needle))!;
  assertEquals(by("(total device FLOPs").met, false, "53% < 82%");
  assert(by("(total device FLOPs").value.includes("53.0%"), by("(total device FLOPs").value);
  assertEquals(by("(LoRA-only").met, true, "88.3% ≥ 82%");
  assertEquals(by("≥ 87.5%").met, true, "88% ≥ 87.5%");
  // bf16: a saves 94% (not met), b 96%: judged on every task, so not met.
  assertEquals(by("bf16").met, false);
  assert(by("bf16").value.includes("94.0%") && by("bf16").value.includes("96.0%"));
  assertEquals(by("within 5%").met, true, "+3.6% ≤ 5%");
  assertEquals(by("within 3%").met, null, "no ρ=0.25 runs: not measurable");
  assertEquals(by("equal device FLOPs").met, true, "2.9 ≤ 3.036");
  assertEquals(by("beats random").met, null, "no baselines ran");

  // Worse NLL flips the NLL and equal-FLOPs targets.
  const worse = [...taskRows("a", 1, { nll_active: 3.1 })];
  const t2 = evaluateTargets(worse, O);
  assertEquals(t2.find((x) => x.name.includes("within 5%"))!.met, false);
  assertEquals(equalFlopsTarget(worse, O).met, false, "3.1 > 3.036");
});

Deno.test("equalFlopsTarget: KR runs outside all's FLOPs range are left out, not extrapolated", () => {
  const rows = taskRows("a", 1, { device_flops: 100e6 });
  const t = equalFlopsTarget(rows, O);
  assertEquals(t.met, null);
  assert(t.value.includes("outside"), t.value);
});

Deno.test("beatsBaselinesTarget: needs KR below both baselines at every budget on 2 of 3 tasks", () => {
  const rows: Row[] = [];
  const add = (task: string, kr: number, random: number, oneshot: number) => {
    for (const seed of [1, 2, 3]) {
      rows.push(syntheticRow({ task, seed, policy: "all" }));
      rows.push(syntheticRow({ task, seed, policy: "kr", nll_active: kr + seed * 0.01 }));
      rows.push(syntheticRow({ task, seed, policy: "random", nll_active: random }));
      rows.push(
        syntheticRow({ task, seed, policy: "oneshot", score: "change", nll_active: oneshot }),
      );
    }
  };
  add("a", 2.9, 3.0, 2.95);
  add("b", 2.9, 3.0, 2.91); // kr mean 2.92 > 2.91: loses to oneshot
  add("c", 2.9, 3.0, 3.0);
  const t = beatsBaselinesTarget(rows, O);
  assertEquals(t.met, true, t.value);
  assert(t.value.startsWith("2 of 3"), t.value);
  assert(t.value.includes("b: does not"), t.value);
  // Only one task won: not met.
  const one = rows.map((r) =>
    r.task === "c" && r.policy === "random" ? { ...r, nll_active: 2.5 } : r
  );
  assertEquals(beatsBaselinesTarget(one, O).met, false);
});
