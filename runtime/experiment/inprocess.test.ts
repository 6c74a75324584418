import { assert, assertClose, assertEquals } from "../../tests/util.ts";
import { budgetCount } from "../../coordinator/scheduler/policy.ts";
import type { KrOptions } from "../../coordinator/scheduler/options.ts";
import { Kernels } from "../../kernels/mod.ts";
import { sampleBatch } from "../data/windows.ts";
import { LlamaModel } from "../model/llama.ts";
import { LocalLora, mulberry32 } from "../model/lora.ts";
import { PROJS } from "../model/modules.ts";
import { loadStories, TOK512 } from "../model/testing.ts";
import { loadLlama2cTokenizer } from "../tokenizer/llama2c.ts";
import { learningRate } from "../train/schedule.ts";
import { type InProcessRun, runInProcess } from "./inprocess.ts";

const weights = loadStories();
const tokenizer = loadLlama2cTokenizer(Deno.readFileSync(TOK512), weights.config.vocabSize);
const text = Deno.readTextFileSync(
  new URL("../../../shared/datasets/tinyshakespeare.txt", import.meta.url),
).slice(0, 6000);
const trainIds = tokenizer.encode(text, { bos: true });
const N = weights.config.nLayers * PROJS.length;

const KR: KrOptions = {
  policy: "kr",
  warmup: 2,
  period: 3,
  probe: 1,
  revive_fraction: 0.25,
  mode: "topk",
  tau: null,
  export: "active",
};

function run(kr: KrOptions | null, steps: number): InProcessRun {
  return {
    weights,
    tokenizer,
    trainIds,
    job: {
      rank: 4,
      alpha: 8,
      lr: 1e-2,
      steps,
      batch: 1,
      seqLen: 16,
      seed: 3,
      targets: [...PROJS],
      codec: "f32",
      kr,
    },
    tierRho: 0.25,
  };
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

Deno.test("inprocess: kr policy all over f32 frames equals local LlamaModel.trainStep (losses rel 1e-5, A and B abs 1e-5)", async () => {
  const o = run({ ...KR, policy: "all" }, 4);
  const r = await runInProcess(o);
  const k = await Kernels.load({ threads: 1 });
  const model = new LlamaModel(k, weights);
  const lora = new LocalLora(k, weights.config, {
    rank: 4,
    alpha: 8,
    targets: PROJS,
    seed: 3,
    dropoutSeed: 4,
  });
  try {
    const rand = mulberry32(3), losses: number[] = [];
    for (let step = 0; step < 4; step++) {
      const { inputs, targets } = sampleBatch(trainIds, 1, 16, rand);
      const lr = learningRate(step, { lr: 1e-2, steps: 4, warmup: 0, schedule: "cosine" });
      const t = await model.trainStep({ ids: inputs, targets, B: 1, T: 16 }, lora, {
        lr,
        weightDecay: 0,
        maxGradNorm: 1,
      });
      losses.push(t.loss);
    }
    assertClose(r.losses, losses, { atol: 0, rtol: 1e-5, msg: "losses" });
    const a = r.lora.exportWeights("all"), b = lora.exportWeights("all");
    for (const [key, w] of b) {
      assertClose(a.get(key)!.A, w.A, { atol: 1e-5, rtol: 0, msg: `${key}.A` });
      assertClose(a.get(key)!.B, w.B, { atol: 1e-5, rtol: 0, msg: `${key}.B` });
    }
    // Every group's X goes down and its ∂X_lora comes back, except the first group's (layer 0's
    // q, k, v: nothing upstream is trained): one frame of 16×64 f32 per step less.
    const noDx = (r.bytesDown.GROUP_INPUT - r.bytesUp.GRAD_X_LORA) / 4;
    assert(noDx >= 16 * 64 * 4 && noDx < 16 * 64 * 4 + 128, `∂X_lora bytes saved per step ${noDx}`);
    assertEquals(r.moduleSteps, r.moduleStepsAll);
    assertEquals(r.finalActive.length, N);
    assertEquals(r.events, []);
    // The policy `all` still reports at its events: SCORES up, SELECT down.
    assert(r.bytesUp.SCORES > 0 && r.bytesDown.SELECT > 0, JSON.stringify(r.bytesUp));
  } finally {
    lora.free();
    model.free();
    k.close();
    r.lora.free();
    r.lora.k.close();
  }
});

Deno.test("inprocess: kr at ρ = 0.25 trains only ⌈ρN⌉ modules (+ probes) after warm-up, and bytes drop", async () => {
  const steps = 8;
  const all = await runInProcess(run({ ...KR, policy: "all" }, steps));
  const kr = await runInProcess(run(KR, steps));
  try {
    const keep = budgetCount(0.25, N);
    const probes = Math.ceil(0.25 * (N - keep));
    // Warm-up (2 steps) trains N; every later step at most keep + probes.
    assert(kr.moduleSteps <= 2 * N + (steps - 2) * (keep + probes), `${kr.moduleSteps}`);
    assert(kr.moduleSteps < 0.6 * kr.moduleStepsAll, `${kr.moduleSteps} / ${kr.moduleStepsAll}`);
    const kills = kr.events.filter((e) => e.step === 2 && e.kind === "kill");
    assertEquals(kills.length, N - keep, "kills at the first decision");
    assert(kills.every((e) => typeof e.score === "number"), "kills carry their score");
    assert(kr.events.some((e) => e.kind === "probe"), "probes were started");
    assert(kr.finalActive.length <= keep + probes, `final ${kr.finalActive.length}`);
    assert(kr.finalActive.length >= 1);
    // Detached modules cost no exchange and no LoRA compute.
    assert(
      sum(kr.bytesUp) < 0.7 * sum(all.bytesUp),
      `up ${sum(kr.bytesUp)} vs ${sum(all.bytesUp)}`,
    );
    assert(
      sum(kr.bytesDown) < 0.7 * sum(all.bytesDown),
      `down ${sum(kr.bytesDown)} vs ${sum(all.bytesDown)}`,
    );
    assert(kr.flops.loraForward < 0.7 * all.flops.loraForward);
    assert(kr.flops.loraBackward < 0.7 * all.flops.loraBackward);
    assert(kr.flops.optimizer < 0.7 * all.flops.optimizer);
    assertEquals(kr.flops.head, all.flops.head, "the head runs every step either way");
    assertEquals(kr.flops.loss, all.flops.loss, "so does the loss");
    assert(kr.flops.loss > 0);
    // Same data, same first steps: the warm-up losses are identical.
    assertClose(kr.losses.slice(0, 2), all.losses.slice(0, 2), { atol: 0, rtol: 1e-6 });
    assertEquals(kr.losses.length, steps);
  } finally {
    for (const r of [all, kr]) {
      r.lora.free();
      r.lora.k.close();
    }
  }
});

Deno.test("inprocess: the effective-weight and sensitivity scores drive decisions too", async () => {
  for (const score of ["effective", "sensitivity"]) {
    const r = await runInProcess(run({ ...KR, score }, 4));
    try {
      const kills = r.events.filter((e) => e.step === 2 && e.kind === "kill");
      assertEquals(kills.length, N - budgetCount(0.25, N), score);
      assert(kills.every((e) => Number.isFinite(e.score) && e.score! >= 0), score);
      assert(r.moduleSteps < r.moduleStepsAll, score);
    } finally {
      r.lora.free();
      r.lora.k.close();
    }
  }
});
