import { assert, assertEquals, assertThrows } from "../tests/util.ts";
import { TokenBuckets } from "./ratelimit.ts";

Deno.test("ratelimit: burst, then refill at the configured rate on the injected clock", () => {
  let now = 1_000_000;
  const b = new TokenBuckets({ burst: 3, perSecond: 0.5, maxKeys: 100 }, () => now);
  for (let i = 0; i < 3; i++) assertEquals(b.take("a"), { ok: true });
  assertEquals(b.take("a"), { ok: false, retryAfterS: 2 });
  assertEquals(b.take("b"), { ok: true }, "other keys have their own bucket");
  now += 1000; // half a token
  assertEquals(b.take("a"), { ok: false, retryAfterS: 1 });
  now += 1000;
  assertEquals(b.take("a"), { ok: true });
  now += 3_600_000; // refill stops at the burst
  for (let i = 0; i < 3; i++) assertEquals(b.take("a"), { ok: true });
  assert(!b.take("a").ok);
});

Deno.test("ratelimit: many keys are bounded, idle (full) buckets are dropped first", () => {
  let now = 0;
  const b = new TokenBuckets({ burst: 2, perSecond: 1, maxKeys: 4 }, () => now);
  for (const key of ["idle-1", "idle-2", "idle-3"]) b.take(key);
  now += 10_000; // the idle buckets are full again: they carry no state
  b.take("busy");
  b.take("busy");
  b.take("new-1"); // over the limit: the idle buckets go, "busy" stays empty
  assert(b.size <= 4, `size ${b.size}`);
  assert(!b.take("busy").ok, "busy kept its empty bucket");
  for (let i = 0; i < 20; i++) b.take(`spray-${i}`);
  assert(b.size <= 4, `size ${b.size} after spraying`);
  assertThrows(() => new TokenBuckets({ burst: 0, perSecond: 1, maxKeys: 1 }, () => 0), /burst/);
});
