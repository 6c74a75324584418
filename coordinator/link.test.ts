import { assert, assertEquals, assertThrows } from "../tests/util.ts";
import { afterDrift, DriftTracker, estimateLink } from "./link.ts";

Deno.test("link: round trip is the least small PING, bandwidth the best large one", () => {
  const big = 1_000_000;
  const r = estimateLink([
    { paddingBytes: 0, seconds: 0.004 },
    { paddingBytes: 0, seconds: 0.002 }, // the link's own round trip
    { paddingBytes: 0, seconds: 0.030 }, // waited while the device computed
    { paddingBytes: big, seconds: 0.018 }, // 2 MB in 16 ms → 1000 Mbit/s
    { paddingBytes: big, seconds: 0.050 },
  ], big)!;
  assertEquals(r.rttMs, 2);
  assertEquals(r.bandwidthMbps, 1000);
  assertEquals(estimateLink([{ paddingBytes: 0, seconds: 0.001 }], big), null);
  assertEquals(estimateLink([{ paddingBytes: big, seconds: 0.001 }], big), null);
  // A large PING no slower than the round trip: bounded, not infinite or negative.
  const fast = estimateLink([
    { paddingBytes: 0, seconds: 0.002 },
    { paddingBytes: big, seconds: 0.002 },
  ], big)!;
  assert(Number.isFinite(fast.bandwidthMbps) && fast.bandwidthMbps > 0);
});

Deno.test("drift: a baseline from the first window, then drift both ways by the factor", () => {
  const t = new DriftTracker({ window: 3, skip: 1, factor: 1.5 });
  assertEquals(t.observe(9), null); // skipped (warm-up)
  for (const s of [1, 1.1, 0.9]) assertEquals(t.observe(s), null);
  assertEquals(t.baselineSeconds, 1);
  // Noise under the factor: nothing.
  for (const s of [1.2, 1.3, 1.1, 0.8, 1.4, 0.9]) assertEquals(t.observe(s), null);
  // Twice as slow: drift once the sliding window's median moves ([0.9, 2, 2.1] → 2).
  assertEquals(t.observe(2), null);
  const d = t.observe(2.1)!;
  assertEquals([d.baselineSeconds, d.recentSeconds, d.ratio], [1, 2, 2]);
  assertEquals(t.baselineSeconds, 2, "the baseline moves to the drifted level");
  for (const s of [2, 2.2, 1.8]) assertEquals(t.observe(s), null);
  // Faster again: [1.8, 0.9, 1] → 1.
  assertEquals(t.observe(0.9), null);
  assertEquals(t.observe(1)!.ratio, 0.5);
  // A reset (the device's work changed) starts a new baseline: no drift reported.
  t.reset();
  for (const s of [5, 5, 5]) assertEquals(t.observe(s), null);
  assertEquals(t.baselineSeconds, 5);
  assertEquals(t.observe(NaN), null);
  assertThrows(() => new DriftTracker({ window: 0, skip: 0, factor: 2 }), /window/);
  assertThrows(() => new DriftTracker({ window: 3, skip: 0, factor: 1 }), /factor/);
});

Deno.test("drift: the slowdown compounds over measurements", () => {
  const link = { rttMs: 1, bandwidthMbps: 100 };
  assertEquals(afterDrift(null, link, null), { ...link, slowdown: 1 });
  const once = afterDrift(null, link, { ratio: 2, baselineSeconds: 1, recentSeconds: 2 });
  assertEquals(once.slowdown, 2);
  const twice = afterDrift(once, link, { ratio: 1.5, baselineSeconds: 2, recentSeconds: 3 });
  assertEquals(twice.slowdown, 3);
});
