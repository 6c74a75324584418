// The SIMD exp (kernels/assembly/vmath.ts) behind attention, cross-entropy and
// SwiGLU, checked on both builds (FMA and plain multiply-add).
import { Kernels } from "./core.ts";
import { assert, assertEquals } from "../tests/util.ts";

for (const noRelaxed of [false, true]) {
  Deno.test(`simd exp is within 1.5e-7 relative on [-87.3, 88] (${noRelaxed ? "simd" : "relaxed"})`, async () => {
    const k = await Kernels.load({ noRelaxed });
    const n = 200003; // odd: the scalar tail runs too
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = -87.3 + (88 + 87.3) * i / (n - 1);
    const inp = k.from(x), out = k.alloc(n);
    k.exports.vexp(out.ptr, inp.ptr, n);
    let worst = 0, at = 0;
    for (let i = 0; i < n; i++) {
      const e = Math.exp(x[i]), err = Math.abs(out.data[i] - e) / e;
      if (err > worst) [worst, at] = [err, x[i]];
    }
    assert(worst < 1.5e-7, `relative error ${worst} at x = ${at}`);
    inp.free();
    out.free();
  });
}

Deno.test("simd exp edge cases: underflow to 0, clamp at e^88, NaN stays NaN, e^0 = 1", async () => {
  const k = await Kernels.load();
  const x = [-87.34, -100, -Infinity, NaN, 0, 89, Infinity];
  const inp = k.from(x), out = k.alloc(x.length);
  k.exports.vexp(out.ptr, inp.ptr, x.length);
  const e88 = Math.fround(Math.exp(88));
  const got = [...out.data];
  assertEquals(got.slice(0, 3), [0, 0, 0]);
  assert(Number.isNaN(got[3]), "NaN in, NaN out");
  assertEquals(got[4], 1);
  assert(Math.abs(got[5] - e88) / e88 < 2e-7 && got[6] === got[5], `clamped: ${got.slice(5)}`);
});
