import { ALIGN, Allocator } from "./allocator.ts";
import { assert, assertEquals, assertThrows } from "../tests/util.ts";

Deno.test("allocator aligns, reuses and coalesces freed blocks", () => {
  const a = new Allocator(10, 10 + 64 * 100, () => {
    throw new Error("no growth");
  });
  const p1 = a.alloc(1), p2 = a.alloc(100), p3 = a.alloc(64);
  for (const p of [p1, p2, p3]) assertEquals(p % ALIGN, 0);
  assert(p2 >= p1 + 64 && p3 >= p2 + 128, "blocks overlap");
  a.free(p2);
  assertEquals(a.alloc(128), p2, "freed block reused");
  a.free(p1);
  a.free(p2);
  a.free(p3);
  assertEquals(a.liveCount, 0);
  // After coalescing, one block spans the whole range again.
  assertEquals(a.alloc(64 * 99), p1);
});

Deno.test("allocator grows on demand and rejects bad sizes and double free", () => {
  let end = 64 * 4;
  const a = new Allocator(0, end, (needed) => (end += Math.ceil(needed / 64) * 64 + 64));
  const p = a.alloc(64 * 10);
  assert(end >= 64 * 10, "grew");
  assertThrows(() => a.alloc(-1), /non-negative/);
  assertThrows(() => a.alloc(1.5), /non-negative/);
  a.free(p);
  assertThrows(() => a.free(p), /double free/);
});
