import { assert, assertEquals, assertThrows } from "../tests/util.ts";
import {
  assignTier,
  type Capability,
  DEFAULT_TIERS,
  tierBudget,
  type TiersConfig,
  validateTiersConfig,
} from "./tiers.ts";

const laptop: Capability = { gflops: 40, threads: 4, memoryMb: 8192 };
const phone: Capability = { gflops: 8, threads: 4, memoryMb: 1024 };
const gateway: Capability = { gflops: 1.5, threads: 1, memoryMb: 256 };

Deno.test("tiers: capability alone picks A, B or C with the default budgets", () => {
  const a = assignTier(laptop);
  assertEquals([a.tier, a.rho, a.microBatch], ["A", 0.5, 8]);
  assert(/network not measured/.test(a.reason), a.reason);
  const b = assignTier(phone);
  assertEquals([b.tier, b.rho, b.microBatch], ["B", 0.25, 4]);
  assert(/not A: 8 GFLOP\/s < 20/.test(b.reason), b.reason);
  const c = assignTier(gateway);
  assertEquals([c.tier, c.rho, c.microBatch], ["C", 0.125, 1]);
  assert(/not B: 1.5 GFLOP\/s < 5/.test(c.reason), c.reason);
});

Deno.test("tiers: every minimum counts (memory, round trip, bandwidth)", () => {
  assertEquals(assignTier({ ...laptop, memoryMb: 1024 }).tier, "B");
  assertEquals(assignTier({ ...laptop, memoryMb: 100 }).tier, "C");
  assertEquals(assignTier(laptop, { rttMs: 5, bandwidthMbps: 900 }).tier, "A");
  const far = assignTier(laptop, { rttMs: 80, bandwidthMbps: 900 });
  assertEquals(far.tier, "B");
  assert(/round trip 80 ms > 50/.test(far.reason), far.reason);
  const thin = assignTier(laptop, { rttMs: 5, bandwidthMbps: 2 });
  assertEquals(thin.tier, "C");
  assert(/bandwidth 2 Mbit\/s < 10/.test(thin.reason), thin.reason);
  // Boundaries are inclusive: meeting a minimum exactly is enough.
  assertEquals(
    assignTier({ gflops: 20, threads: 1, memoryMb: 2048 }, { rttMs: 50, bandwidthMbps: 50 }).tier,
    "A",
  );
});

Deno.test("tiers: a custom config moves the thresholds and budgets", () => {
  const strict: TiersConfig = {
    A: { ...DEFAULT_TIERS.A, minGflops: 100, rho: 0.75, microBatch: 16 },
    B: { ...DEFAULT_TIERS.B, minGflops: 30 },
    C: { rho: 0.1, microBatch: 2 },
  };
  validateTiersConfig(strict);
  assertEquals(assignTier(laptop, undefined, strict).tier, "B");
  assertEquals(assignTier({ ...laptop, gflops: 150 }, undefined, strict).rho, 0.75);
  assertEquals(assignTier(phone, undefined, strict).microBatch, 2);
  assertEquals(tierBudget("A", strict), { rho: 0.75, microBatch: 16 });
});

Deno.test("tiers: an unusable config is refused with the field named", () => {
  validateTiersConfig(DEFAULT_TIERS);
  assertThrows(
    () => validateTiersConfig({ ...DEFAULT_TIERS, C: { rho: 0, microBatch: 1 } }),
    /tiers\.C\.rho must be in \(0, 1\]/,
  );
  assertThrows(
    () => validateTiersConfig({ ...DEFAULT_TIERS, B: { ...DEFAULT_TIERS.B, microBatch: 1.5 } }),
    /tiers\.B\.microBatch/,
  );
  assertThrows(
    () => validateTiersConfig({ ...DEFAULT_TIERS, B: { ...DEFAULT_TIERS.B, minGflops: 50 } }),
    /A\.minGflops must be at least as strict as B\.minGflops/,
  );
});

Deno.test("tiers: a device whose steps slowed down is judged by its discounted GFLOP/s", () => {
  const link = { rttMs: 5, bandwidthMbps: 900 };
  assertEquals(assignTier(laptop, { ...link, slowdown: 1 }).tier, "A");
  const slow = assignTier(laptop, { ...link, slowdown: 4 }); // 40 / 4 = 10 GFLOP/s
  assertEquals(slow.tier, "B");
  assert(/10 GFLOP\/s \(40 reported, steps 4× slower\) < 20/.test(slow.reason), slow.reason);
  assertEquals(assignTier(laptop, { ...link, slowdown: 10 }).tier, "C");
  // Faster than at registration: the report is not inflated, the capability still decides.
  assertEquals(assignTier(phone, { ...link, slowdown: 0.25 }).tier, "B");
});
