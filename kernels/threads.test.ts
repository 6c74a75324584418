import { assertEquals, assertThrows } from "../tests/util.ts";
import { Kernels } from "./core.ts";
import { MAX_ARGS, MAX_LISTS } from "./threads.ts";

Deno.test("thread pool: every list runs exactly once, also with more lists than threads", async () => {
  const k = await Kernels.load({ threads: 2 });
  try {
    const lists = MAX_LISTS + 9; // more than one job's worth
    const ones = k.from(new Float32Array(4).fill(1));
    const sums = k.alloc(lists * 4);
    sums.data.fill(0);
    const rounds = 300;
    for (let r = 0; r < rounds; r++) {
      // Back-to-back jobs of different sizes, so claims race with the next job's publication.
      const n = r % 3 === 0 ? lists : 1 + (r % 7);
      k.parallel(
        "axpy",
        Array.from({ length: n }, (_, i) => [sums.ptr + i * 16, ones.ptr, 1, 4]),
      );
    }
    const expected = Array.from({ length: lists }, (_, i) => {
      let runs = 0;
      for (let r = 0; r < rounds; r++) if (i < (r % 3 === 0 ? lists : 1 + (r % 7))) runs++;
      return runs;
    });
    assertEquals(Array.from({ length: lists }, (_, i) => sums.data[i * 4 + 3]), expected);
    ones.free();
    sums.free();
  } finally {
    k.close();
  }
});

Deno.test("thread pool: argument lists longer than a slot are refused", async () => {
  const k = await Kernels.load({ threads: 2 });
  try {
    const tooMany = Array.from({ length: MAX_ARGS }, () => 0);
    assertThrows(() => k.parallel("fill", [tooMany, tooMany]), /16 arguments, at most 15/);
  } finally {
    k.close();
  }
});
