import { assert, assertEquals, assertThrows, testKernels } from "../../tests/util.ts";
import { LocalLora } from "../model/lora.ts";
import { loadStories } from "../model/testing.ts";
import type { SelectMessage } from "../protocol/control.ts";
import { changeNorm, effectiveWeightChange } from "./scores.ts";
import { DeviceSelection } from "./selection.ts";

const config = loadStories().config;
const k = await testKernels();

function select(m: Partial<SelectMessage>): SelectMessage {
  return {
    step: 0,
    active: [],
    probing: [],
    killed: [],
    revived: [],
    events: [],
    budget: null,
    tier: null,
    reportAt: null,
    score: "change",
    lr_scale: 1,
    ...m,
  };
}

/** Adds `by` to every entry of one module's A and B. */
function nudge(lora: LocalLora, key: string, by: number) {
  const [l, p] = key.split(".");
  const w = lora.weights(Number(l), p as "q");
  lora.importWeights({ [key]: { A: w.A.map((x) => x + by), B: w.B.map((x) => x + by) } });
}

Deno.test("device selection: scores the modules trained since the last report, against θ of that report", () => {
  const lora = new LocalLora(k, config, { rank: 2, alpha: 4, seed: 1 });
  try {
    const all = lora.moduleKeys();
    const sel = new DeviceSelection(lora);
    assertEquals(sel.afterStep(1, all), null, "no SELECT yet: never reports");
    sel.onSelect(select({ active: all, reportAt: 3 }));
    const before = lora.weights(0, "q");
    nudge(lora, "0.q", 0.01);
    assertEquals(sel.afterStep(2, all), null);
    const r = sel.afterStep(3, all)!;
    assertEquals([r.step, r.score, Object.keys(r.values)], [3, "change", all]);
    const now = lora.weights(0, "q");
    assertEquals(r.values["0.q"], changeNorm([now.A, now.B], [before.A, before.B]));
    assert(r.values["0.q"] > 0 && r.values["0.k"] === 0);

    // Decision at 3: kill 0.k, probe nothing; effective-weight change from now on.
    const kept = all.filter((m) => m !== "0.k");
    sel.onSelect(select({
      step: 3,
      active: kept,
      killed: ["0.k"],
      events: [{ kind: "kill", module: "0.k", score: 0 }],
      reportAt: 5,
      score: "effective",
    }));
    assertEquals(sel.events, [{ step: 3, kind: "kill", module: "0.k", score: 0 }]);
    nudge(lora, "0.q", -0.02);
    sel.afterStep(4, kept);
    const r2 = sel.afterStep(5, kept)!;
    assert(!("0.k" in r2.values), "a killed module is not scored");
    const q = lora.weights(0, "q");
    const dims = { inDim: config.dim, outDim: config.dim };
    assertEquals(
      r2.values["0.q"],
      effectiveWeightChange(q.A, q.B, now.A, now.B, 2, dims.inDim, dims.outDim, 2),
    );
    assertEquals(sel.moduleSteps, 3 * all.length + 2 * kept.length);
    assertEquals([sel.lastReport, sel.selected!.length], [5, kept.length]);
    assertThrows(() => sel.onSelect(select({ step: 5, active: ["99.q"] })), /do not have/);
  } finally {
    lora.free();
  }
});
