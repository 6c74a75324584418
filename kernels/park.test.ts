import { assertEquals } from "../tests/util.ts";
import { Kernels } from "./core.ts";

Deno.test("park: parked workers sleep and the next job still runs every list", async () => {
  const k = await Kernels.load({ threads: 2 });
  try {
    const ones = k.from(new Float32Array(4).fill(1));
    const sums = k.alloc(8 * 4);
    sums.data.fill(0);
    const rounds = 50;
    for (let r = 0; r < rounds; r++) {
      k.parallel("axpy", Array.from({ length: 8 }, (_, i) => [sums.ptr + i * 16, ones.ptr, 1, 4]));
      k.park();
      // Sometimes give the workers time to notice and sleep, sometimes race the next job.
      if (r % 5 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    assertEquals(Array.from({ length: 8 }, (_, i) => sums.data[i * 4 + 3]), Array(8).fill(rounds));
    ones.free();
    sums.free();
  } finally {
    k.close();
  }
});

Deno.test("park: a no-op without threads", async () => {
  const k = await Kernels.load({ threads: 1 });
  try {
    k.park();
    const x = k.from(new Float32Array([1, 2]));
    const y = k.from(new Float32Array([3, 4]));
    k.parallel("axpy", [[y.ptr, x.ptr, 2, 2]]);
    assertEquals(Array.from(y.data), [5, 8]);
  } finally {
    k.close();
  }
});
