import { embeddingBackward, embeddingForward } from "./embed.ts";
import { embeddingBackwardRef, embeddingForwardRef } from "./reference/embed.ts";
import {
  assertClose,
  assertEquals,
  assertThrows,
  numericGrad,
  randn,
  rng,
  testKernels,
} from "../tests/util.ts";

// [N = B·T ids, V, C]
const SHAPES: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [17, 4, 8], [64, 32, 64], [
  5,
  300,
  17,
]];

function randomIds(N: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: N }, () => Math.floor(r() * V));
}

Deno.test("embedding gather and scatter-add match the reference (repeated ids add up)", async () => {
  const k = await testKernels();
  for (const [N, V, C] of SHAPES) {
    const t0 = randn(V * C, V + C), ids0 = randomIds(N, V, N + V), dy = randn(N * C, N);
    const table = k.from(t0), ids = k.from(ids0, [N], "i32"), out = k.alloc(N * C);
    embeddingForward(k, out, table, ids, C);
    assertEquals(
      [...out.data],
      [...embeddingForwardRef(t0, ids0, C)].map(Math.fround),
      `N=${N} V=${V} C=${C}`,
    );
    const base = randn(V * C, 3), dtable = k.from(base), dout = k.from(dy);
    embeddingBackward(k, dtable, dout, ids, C);
    const ref = embeddingBackwardRef(dy, ids0, V, C).map((v, i) => v + base[i]);
    assertClose(dtable.data, ref, { atol: 1e-6, rtol: 1e-6, msg: `dtable N=${N} V=${V} C=${C}` });
    for (const a of [table, ids, out, dtable, dout]) a.free();
  }
});

Deno.test("embedding backward equals central differences of L = Σ out·R", async () => {
  const k = await testKernels();
  const N = 6, V = 4, C = 3;
  const t0 = Float64Array.from(randn(V * C, 1)), ids0 = Int32Array.from([2, 0, 2, 3, 2, 0]);
  const R = randn(N * C, 2);
  const loss = () => embeddingForwardRef(t0, ids0, C).reduce((s, o, i) => s + o * R[i], 0);
  const dtable = k.from(new Float32Array(V * C)), dout = k.from(R), ids = k.from(ids0, [N], "i32");
  embeddingBackward(k, dtable, dout, ids, C);
  assertClose(dtable.data, t0.map((_, i) => numericGrad(loss, t0, i)), { atol: 1e-5, rtol: 1e-4 });
  for (const a of [dtable, dout, ids]) a.free();
});

Deno.test("embedding rejects ids outside the vocabulary and float ids", async () => {
  const k = await testKernels();
  const table = k.alloc([4, 3]), out = k.alloc(6);
  const ids = k.from([1, 4], [2], "i32"), neg = k.from([-1, 0], [2], "i32"), f = k.from([0, 1]);
  assertThrows(
    () => embeddingForward(k, out, table, ids, 3),
    /ids\[1\] = 4 is outside the vocabulary \[0, 4\)/,
  );
  assertThrows(() => embeddingBackward(k, table, out, neg, 3), /ids\[0\] = -1/);
  // @ts-expect-error: f32 ids are a type error too
  assertThrows(() => embeddingForward(k, out, table, f, 3), /ids is f32, expected i32/);
  for (const a of [table, out, ids, neg, f]) a.free();
});
