/**
 * The coordinator session driving Kill and Revive against a real device session (in memory, real
 * frames): decisions and events on both sides, a re-tier mid-run, detached modules keeping their
 * weights and AdamW moments, and refused SCORES.
 */
import { assert, assertEquals } from "../tests/util.ts";
import { Kernels } from "../kernels/mod.ts";
import { sampleBatch } from "../runtime/data/windows.ts";
import { connectInProcess } from "../runtime/experiment/inprocess.ts";
import { LlamaBlocks } from "../runtime/model/blocks.ts";
import { LlamaEnds } from "../runtime/model/ends.ts";
import { LocalLora, mulberry32 } from "../runtime/model/lora.ts";
import { type Proj, PROJS } from "../runtime/model/modules.ts";
import { loadStories, TOK512 } from "../runtime/model/testing.ts";
import {
  decodeHeader,
  encodeControlFrame,
  HEADER_BYTES,
  MESSAGE_TYPES,
} from "../runtime/protocol/mod.ts";
import { OFF } from "../runtime/protocol/wire.ts";
import { loadLlama2cTokenizer } from "../runtime/tokenizer/llama2c.ts";
import type { KrOptions } from "./scheduler/options.ts";
import { budgetCount } from "./scheduler/policy.ts";
import type { StepReport } from "./session.ts";

const weights = loadStories();
const tokenizer = loadLlama2cTokenizer(Deno.readFileSync(TOK512), weights.config.vocabSize);
const ids = tokenizer.encode(
  Deno.readTextFileSync(new URL("../../shared/datasets/tinyshakespeare.txt", import.meta.url))
    .slice(0, 4000),
  { bos: true },
);
const N = weights.config.nLayers * PROJS.length;
const KR: KrOptions = {
  policy: "kr",
  warmup: 2,
  period: 2,
  probe: 1,
  revive_fraction: 0.5,
  mode: "topk",
  tau: null,
  export: "active",
};

async function setup(
  steps: number,
  beforeSend?: (frame: Uint8Array, send: (frame: Uint8Array) => void) => void,
  onReport?: (r: StepReport, setTier: (tier: string, rho: number) => void) => void,
) {
  const k = await Kernels.load({ threads: 1 });
  const lora = new LocalLora(k, weights.config, { rank: 2, alpha: 4, seed: 1 });
  const ends = new LlamaEnds(k, weights);
  const blocks = new LlamaBlocks(k, weights.config, weights.layers);
  const codecs = { activations: "f32", gradients: "f32", topk: null } as const;
  const reports: StepReport[] = [];
  const pair = connectInProcess({
    k,
    blocks,
    ends,
    lora,
    codecs,
    spec: {
      session: 5,
      jobId: "job_kr",
      deviceId: "dev_kr",
      targets: PROJS,
      codecs,
      maxBatch: 1,
      maxSeqLen: 16,
      selection: { kr: KR, totalSteps: steps, stepsPerPass: 4, seed: 1, tier: "B", tierRho: 0.25 },
    },
    onReport: (r) => {
      reports.push(r);
      onReport?.(r, (tier, rho) => pair.session.setTier(tier, rho));
    },
    beforeSend,
  });
  await pair.device.hello();
  const rand = mulberry32(1);
  const step = (n: number) => {
    const { inputs, targets } = sampleBatch(ids, 1, 16, rand);
    return pair.device.trainStep(n, [{ ids: inputs, targets, B: 1, T: 16 }], {
      lr: 2e-2,
      maxGradNorm: 1,
    });
  };
  const close = async () => {
    await pair.device.awaitSelection(steps);
    pair.transport.close(1000, "done");
    await pair.session.finished;
    pair.device.free();
    ends.free();
    lora.free();
    k.close();
  };
  return { ...pair, lora, reports, step, close };
}

function moduleState(lora: LocalLora, key: string) {
  const [l, p] = key.split(".");
  const w = lora.weights(Number(l), p as Proj), o = lora.optimizerState(Number(l), p as Proj);
  return { A: [...w.A], B: [...w.B], m: [...o.m], v: [...o.v], step: o.step };
}

Deno.test("session kr: decisions reach the device, a re-tier changes the budget, detached modules keep weights and moments and resume", async () => {
  const steps = 10;
  // Re-tiered right after the decision at step 6: the probe end at 7 is the next decision.
  const t = await setup(steps, undefined, (r, setTier) => {
    if (r.selection?.step === 6) setTier("A", 0.5);
  });
  try {
    const keys = t.lora.moduleKeys();
    const killedState = new Map<string, ReturnType<typeof moduleState>>();
    let resumed = 0;
    for (let n = 0; n < steps; n++) {
      const before = new Map(keys.map((key) => [key, moduleState(t.lora, key)]));
      const r = await t.step(n);
      const trained = new Set(r.activeModules);
      if (n < 2) assertEquals(trained.size, N, "warm-up trains every module");
      for (const key of keys) {
        const was = before.get(key)!, now = moduleState(t.lora, key);
        if (!trained.has(key)) {
          assertEquals(now, was, `detached ${key} at step ${n} changed`);
          if (!killedState.has(key)) killedState.set(key, was);
          continue;
        }
        assertEquals(now.step, was.step + 1, `${key} AdamW step count`);
        assert(
          [...now.A, ...now.B].some((x, i) => x !== [...was.A, ...was.B][i]),
          `${key} trained at step ${n} but A and B are unchanged`,
        );
        const dead = killedState.get(key);
        if (dead !== undefined) {
          // Revived: it starts from exactly the weights and moments it was killed with.
          assertEquals(was, dead, `${key} resumed from other state`);
          killedState.delete(key);
          resumed++;
        }
      }
    }
    assert(resumed > 0, "some killed module was revived and trained again");

    const decisions = t.reports.filter((r) => r.selection).map((r) => r.selection!);
    assertEquals(decisions.map((d) => d.step), [2, 3, 4, 5, 6, 7, 8, 9]);
    assert(decisions.every((d) => !d.missedScores));
    const keep25 = budgetCount(0.25, N), keep50 = budgetCount(0.5, N);
    assertEquals(decisions[0].events.filter((e) => e.kind === "kill").length, N - keep25);
    for (const d of decisions.filter((d) => d.step <= 6)) {
      assertEquals(d.budget, { rho: 0.25 });
      assertEquals(d.active.length - d.probing.length, keep25);
    }
    for (const d of decisions.filter((d) => d.step >= 7)) {
      assertEquals([d.budget, d.tier], [{ rho: 0.5 }, "A"]);
      assertEquals(d.active.length - d.probing.length, keep50, `keep at ${d.step}`);
    }
    // The device recorded the same moves, with their steps, and after the warm-up trains its
    // modules at the job's lr × lr_scale (KR_DEFAULTS: 2).
    assertEquals(t.device.selection.events, decisions.flatMap((d) => d.events));
    assertEquals(t.device.selection.lrScale, 2);
    assertEquals(t.device.errors, []);
    const last = decisions.at(-1)!;
    assertEquals(t.device.selection.selected, last.active);
  } finally {
    await t.close();
  }
});

Deno.test("session kr: SCORES for a module not trained, or missing one, are refused with an ERROR and change nothing", async () => {
  const steps = 4;
  const all = Array.from(
    { length: weights.config.nLayers },
    (_, l) => PROJS.map((p) => `${l}.${p}`),
  )
    .flat();
  let tampered = 0;
  // Before each genuine SCORES the device sends a bad copy: one module missing (step 2), then
  // one killed module added (step 3).
  const t = await setup(steps, (frame, send) => {
    if (frame[OFF.type] !== MESSAGE_TYPES.SCORES) return;
    const h = decodeHeader(frame);
    const scores = JSON.parse(new TextDecoder().decode(frame.subarray(HEADER_BYTES)));
    const values = { ...scores.values };
    if (scores.step === 2) delete values[Object.keys(values)[0]];
    else values[all.find((m) => !(m in values))!] = 1;
    tampered++;
    send(
      encodeControlFrame({
        type: "SCORES",
        session: h.session,
        step: h.step,
        scores: { ...scores, values },
      }),
    );
  });
  try {
    for (let n = 0; n < steps; n++) await t.step(n);
    assertEquals(tampered, 2);
    const refusals = t.device.errors.map((e) => e.message);
    assertEquals(refusals.length, 2, JSON.stringify(refusals));
    assert(/exactly the modules trained.*missing: /.test(refusals[0]), refusals[0]);
    assert(/not trained: \d+\.\w+/.test(refusals[1]), refusals[1]);
    // The genuine SCORES that followed each bad copy were taken: decisions as usual.
    const decisions = t.reports.filter((r) => r.selection).map((r) => r.selection!);
    assertEquals(decisions.map((d) => [d.step, d.missedScores]), [[2, false], [3, false]]);
    assertEquals(
      decisions[0].events.filter((e) => e.kind === "kill").length,
      N - budgetCount(0.25, N),
    );
  } finally {
    await t.close();
  }
});
