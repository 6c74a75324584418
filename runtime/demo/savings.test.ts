import { assertClose, assertEquals } from "../../tests/util.ts";
import { estimateSavings, stepCosts } from "./savings.ts";

Deno.test("demo savings: all-modules steps set the cost; one-off bytes do not", () => {
  // 4 warm-up steps with all 8 modules (the first carries 1000 extra bytes of HELLO/PINGs),
  // then 6 steps with 2 modules at a quarter of the LoRA cost and bytes.
  const cumulative: { flops: number; bytes: number; modules: number }[] = [];
  let f = 0, b = 0;
  for (let i = 0; i < 10; i++) {
    const full = i < 4;
    f += full ? 100 : 40;
    b += (full ? 200 : 50) + (i === 0 ? 1000 : 0);
    cumulative.push({ flops: f, bytes: b, modules: full ? 8 : 2 });
  }
  const steps = stepCosts(cumulative);
  assertEquals(steps.map((s) => s.flops), [100, 100, 100, 100, 40, 40, 40, 40, 40, 40]);
  assertEquals(steps[0].bytes, 1200);
  const s = estimateSavings(steps, 8);
  assertEquals(s.basisSteps, 4);
  assertClose([s.flops!], [1 - 640 / 1000], { rtol: 1e-12 });
  assertClose([s.bytes!], [1 - (4 * 200 + 1000 + 6 * 50) / 2000], { rtol: 1e-12 });
  // Every step trained every module: nothing saved.
  assertEquals(estimateSavings(steps.slice(0, 4).map((x) => ({ ...x, bytes: 200 })), 8).bytes, 0);
  // No all-modules step to measure against: no estimate.
  assertEquals(estimateSavings(steps.slice(4), 8), { flops: null, bytes: null, basisSteps: 0 });
});
