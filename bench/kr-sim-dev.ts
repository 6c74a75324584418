/**
 * Kill-and-Revive research harness (issue 5): one process, no transport. LocalLora's active set
 * is exactly the split system's "detached" semantics, so this runs the real selection policies
 * (coordinator/scheduler) on the real device scores (runtime/device/scores.ts) and prints the
 * held-out NLL (§7, modules active at the end) per task / policy / score / budget / seed, with
 * the device compute and the module traffic relative to `all` (analytic, as runtime/device/
 * flops.ts counts them).
 *
 *   deno run -A bench/kr-sim-dev.ts [--task shakespeare|austen|sst2] [--steps 200] [--lr 6e-3]
 *     [--runs all,random,oneshot:effective,kr:effective] [--rho 0.25,0.125] [--seeds 0,1,2]
 *     [--warmup 10] [--period 40] [--probe-frac 0.1] [--probe-window 5] [--selected-lr-scale 2]
 *     [--cost-aware] [--cost-budget] [--margin 1] [--rank 8] [--alpha 2·rank] [--batch 4]
 *     [--seq 128] [--eval-seq seq] [--json]
 *
 * The defaults are the recommended ones (coordinator/scheduler/options.ts KR_DEFAULTS at 200
 * steps). Data: the task's text (runtime/demo/data.ts), held-out = its last 10% cut at a line
 * (splitFold fold 0), its first 20k tokens evaluated in windows of 128. Batch 4×128, rank 8,
 * alpha 16, AdamW (0.9, 0.999, no decay), clip 1, cosine to 10% of lr, one kernel thread. The
 * seed drives LoRA's A, the data order and the policy's rng.
 *
 * A run spec is `policy[:score[:options]]`, options `key=value` separated by ';' overriding the
 * flags for that run: warmup, period, pf (probe fraction), pw (probe window), cost=1 (rank by
 * score per unit cost r·(in+out)), over=1 (cost budget), lrs (lr multiplier of the selected
 * modules after the warm-up; never applied to `all`), tau (threshold mode), margin (kr's
 * hysteresis: a probe replaces an active module only if its score exceeds margin × that module's),
 * rks (rank reallocation: kept modules grow to rank × rks after each decision; 0 = the rank at
 * which they hold as many parameters as all, r · Σ_all (in+out) / Σ_kept (in+out); lrs then
 * defaults to 1, as kr.lr_scale does).
 * A dev tool, not a test.
 */
import { Kernels } from "../kernels/mod.ts";
import { loraBackwardFlops, loraForwardFlops } from "../kernels/mod.ts";
import {
  type Budget,
  initialState,
  keepOf,
  nextState,
  policyByName,
  scheduleAt,
  type SchedulerState,
  type SelectionConfig,
  trained,
} from "../coordinator/scheduler/mod.ts";
import { readSource, splitFold } from "../runtime/demo/data.ts";
import {
  headBackwardFlops,
  headForwardFlops,
  lossFlops,
  optimizerFlops,
} from "../runtime/device/flops.ts";
import {
  changeNorm,
  effectiveWeightChange,
  SensitivityAccumulator,
} from "../runtime/device/scores.ts";
import { loadModel } from "../runtime/load.ts";
import { sampleBatch } from "../runtime/data/windows.ts";
import { LlamaModel } from "../runtime/model/llama.ts";
import { LocalLora, type LoraWeights, mulberry32 } from "../runtime/model/lora.ts";
import { type Proj, projDims } from "../runtime/model/modules.ts";
import { nllOfIds } from "../runtime/train/nll.ts";
import { learningRate } from "../runtime/train/schedule.ts";

const args = Deno.args;
const value = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const flag = (name: string) => args.includes(name);
const nums = (s: string) => s.split(",").map(Number);

const TASKS: Record<string, { name: string; file: string; lines?: number }> = {
  shakespeare: { name: "tinyshakespeare", file: "tinyshakespeare.txt" },
  austen: { name: "austen-pride", file: "austen/prideprejudice.txt" },
  sst2: { name: "sst2-sentences", file: "sst2/train.tsv", lines: 4000 },
};
const taskName = value("--task", "shakespeare");
const steps = Number(value("--steps", "200"));
const lr = Number(value("--lr", "6e-3"));
const rank = Number(value("--rank", "8")), alpha = Number(value("--alpha", String(2 * rank)));
const batch = Number(value("--batch", "4")), seqLen = Number(value("--seq", "128"));
const evalSeq = Number(value("--eval-seq", String(seqLen)));
const runs = value("--runs", "all,random,oneshot:effective,kr:effective").split(
  ",",
).filter((s) => s.length > 0);
const rhos = nums(value("--rho", "0.25,0.125"));
const seeds = nums(value("--seeds", "0,1,2"));
const defaults = {
  warmup: Number(value("--warmup", "10")),
  period: Number(value("--period", "40")),
  pf: Number(value("--probe-frac", "0.1")),
  pw: Number(value("--probe-window", "5")),
  cost: flag("--cost-aware") ? 1 : 0,
  lrs: Number(value("--selected-lr-scale", "2")),
  over: flag("--cost-budget") ? 1 : 0,
  tau: NaN,
  margin: Number(value("--margin", "1")),
  rks: Number(value("--rank-scale", "1")),
};

const loaded = await loadModel("stories260K", { requireTokenizer: true });
const k = await Kernels.load({ threads: 1 });
const model = new LlamaModel(k, loaded.weights);
const tok = loaded.tokenizer!;
const cfg = loaded.weights.config;
const task = TASKS[taskName];
if (!task) throw new Error(`unknown --task ${taskName}; choose ${Object.keys(TASKS).join(", ")}`);
const text = await readSource(task);
const split = splitFold(text, { heldOut: 0.1, fold: 0 });
const trainIds = tok.encode(split.train, { bos: true });
const heldIds = tok.encode(split.heldOut, { bos: true }).slice(0, 20000);

const probe = new LocalLora(k, cfg, { rank, alpha });
const modules = probe.moduleKeys();
probe.free();
const dims = new Map<string, { layer: number; proj: Proj; inDim: number; outDim: number }>();
for (const key of modules) {
  const [l, p] = key.split(".");
  dims.set(key, { layer: Number(l), proj: p as Proj, ...projDims(cfg, p as Proj) });
}
/** Relative cost of a module: r·(in+out) — its FLOPs, bytes on the wire and parameters. */
const cost = (m: string) => rank * (dims.get(m)!.inDim + dims.get(m)!.outDim);
const costs = new Map(modules.map((m) => [m, cost(m)]));
const M = batch * seqLen;
const headFlops = headForwardFlops(M, cfg.dim, cfg.vocabSize) +
  headBackwardFlops(M, cfg.dim, cfg.vocabSize) + lossFlops(M, cfg.vocabSize);

interface RunResult {
  task: string;
  run: string;
  rho: number;
  seed: number;
  nll: number;
  nllAll: number;
  loraFlops: number;
  deviceFlops: number;
  bytes: number;
  moduleSteps: number;
  finalActive: string[];
  seconds: number;
}

function parseRun(spec: string) {
  const [policy, score = "change", opts = ""] = spec.split(":");
  const o = { ...defaults };
  const given = new Set<string>();
  for (const kv of opts.split(";").filter((s) => s)) {
    const [key, v] = kv.split("=");
    if (!(key in o)) throw new Error(`unknown run option ${key} in ${spec}`);
    (o as Record<string, number>)[key] = Number(v);
    given.add(key);
  }
  // As the product (defaultLrScale): with rank reallocation the lr is not doubled unless asked.
  if (o.rks !== 1 && !given.has("lrs") && !args.includes("--selected-lr-scale")) o.lrs = 1;
  return { policy, score, o };
}

async function runOne(spec: string, rho: number, seed: number): Promise<RunResult> {
  const t0 = performance.now();
  const { policy: policyName, score, o } = parseRun(spec);
  const policy = policyByName(policyName);
  const lora = new LocalLora(k, cfg, { rank, alpha, seed });
  const data = mulberry32(seed);
  const rng = mulberry32(seed + 7919);
  const config: SelectionConfig = {
    warmup: o.warmup,
    period: o.period,
    probeFraction: o.pf,
    probeWindow: o.pw,
    margin: o.margin,
  };
  const budget: Budget = Number.isFinite(o.tau)
    ? { tau: o.tau }
    : { rho, over: o.over ? "cost" : "count" };
  let state: SchedulerState = initialState(modules);
  let snap = lora.exportWeights("all");
  const sens = new Map(modules.map((m) => [m, new SensitivityAccumulator()]));
  let loraFlops = 0, deviceFlops = 0, bytes = 0, moduleSteps = 0;
  const scoreOf = (m: string, now: Map<string, LoraWeights>): number => {
    const a = now.get(m)!, b = snap.get(m)!, d = dims.get(m)!;
    let c: number;
    if (score === "change") c = changeNorm([a.A, a.B], [b.A, b.B]);
    else if (score === "effective") {
      const r = lora.rankOf(d.layer, d.proj);
      c = effectiveWeightChange(a.A, a.B, b.A, b.B, r, d.inDim, d.outDim, alpha / rank);
    } else if (score === "sensitivity") {
      const s = sens.get(m)!;
      c = s.steps === 0 ? 0 : s.value() / s.steps;
    } else throw new Error(`unknown score ${score}`);
    return o.cost ? c / cost(m) : c;
  };
  try {
    for (let step = 0; step < steps; step++) {
      const on = policyName === "all" ? modules : trained(state);
      lora.setActiveKeys(on);
      const { inputs, targets } = sampleBatch(trainIds, batch, seqLen, data);
      const selecting = step >= o.warmup && policyName !== "all";
      const stepLr = learningRate(step, { lr, steps }) * (selecting ? o.lrs : 1);
      const before = score === "sensitivity" ? lora.exportWeights("active") : null;
      const r = await model.trainStep({ ids: inputs, targets, B: batch, T: seqLen }, lora, {
        lr: stepLr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
        maxGradNorm: 1,
      });
      if (!Number.isFinite(r.loss)) throw new Error(`${spec}: loss ${r.loss} at step ${step}`);
      if (before) {
        for (const m of on) {
          const d = dims.get(m)!, g = lora.grads(d.layer, d.proj), w = before.get(m)!;
          const s = sens.get(m)!;
          s.add(w.A, g.dA);
          s.add(w.B, g.dB);
          s.endStep();
        }
      }
      let c = 0;
      const n = lora.parameterCount(on);
      for (const m of on) {
        const d = dims.get(m)!, r = lora.rankOf(d.layer, d.proj);
        c += loraForwardFlops(M, d.inDim, r, d.outDim) +
          loraBackwardFlops(M, d.inDim, r, d.outDim);
        // X down, ΔY up, G down, dX up: f32 activations per active module.
        bytes += 4 * M * 2 * (d.inDim + d.outDim);
      }
      bytes += 4 * M * cfg.dim * 2; // h0 up, ∂hL down
      moduleSteps += on.length;
      loraFlops += c;
      deviceFlops += c + optimizerFlops(n, true) + headFlops;
      const done = step + 1;
      if (policyName === "all") continue;
      const ev = scheduleAt(done, config, steps);
      if (!ev.decision && !ev.probeEnd && !(ev.final && state.probing.length > 0)) continue;
      const now = lora.exportWeights("all");
      const scores = new Map<string, number>();
      for (const m of on) scores.set(m, scoreOf(m, now));
      const decision = policy.decide({
        step: done,
        totalSteps: steps,
        modules,
        scores,
        state,
        budget,
        rng,
        config,
        costs,
      });
      state = nextState(state, decision, done, keepOf(budget, modules.length));
      snap = now;
      // Rank reallocation (rks; 0 = all's parameters): the kept modules grow, s·B·A unchanged.
      const kept = state.active.reduce((a, m) => a + costs.get(m)!, 0);
      const scale = o.rks === 0 ? [...costs.values()].reduce((a, b) => a + b, 0) / kept : o.rks;
      const grown = o.rks === 0 ? Math.floor(rank * scale) : Math.round(rank * scale);
      if (scale > 1 && lora.growRank(state.active, grown, done).length > 0) {
        snap = lora.exportWeights("all");
      }
      for (const s of sens.values()) s.reset();
    }
    const finalActive = policyName === "all" ? modules : state.active;
    lora.setActiveKeys(finalActive);
    const nll = (await nllOfIds(model, heldIds, evalSeq, { hooks: lora })).mean_nll;
    lora.setActiveKeys(modules);
    const nllAll = policyName === "all"
      ? nll
      : (await nllOfIds(model, heldIds, evalSeq, { hooks: lora })).mean_nll;
    return {
      task: task.name,
      run: spec,
      rho,
      seed,
      nll,
      nllAll,
      loraFlops,
      deviceFlops,
      bytes,
      moduleSteps: moduleSteps / (steps * modules.length),
      finalActive,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    lora.free();
  }
}

const results: RunResult[] = [];
const base = new Map<number, RunResult>();
const fmt = (x: number, d = 3) => x.toFixed(d);
console.log(
  `# task=${task.name} steps=${steps} lr=${lr} batch=${batch}x${seqLen} rank=${rank} ` +
    `train=${trainIds.length} tok, held-out=${heldIds.length} tok, defaults=${
      JSON.stringify(defaults)
    }`,
);
console.log(
  "run | rho | seed | nll_active | nll_all | dev_flops_red | lora_flops_red | bytes_red | " +
    "module_steps | s | final active",
);
for (const spec of runs) {
  const isAll = spec.split(":")[0] === "all";
  for (const rho of isAll ? [1] : rhos) {
    for (const seed of seeds) {
      const r = await runOne(spec, rho, seed);
      results.push(r);
      if (isAll) base.set(seed, r);
      const b = base.get(seed);
      const red = (x: number, y: number | undefined) =>
        y === undefined ? "-" : `${(100 * (1 - x / y)).toFixed(1)}%`;
      console.log(
        `${spec} | ${rho} | ${seed} | ${fmt(r.nll)} | ${fmt(r.nllAll)} | ` +
          `${red(r.deviceFlops, b?.deviceFlops)} | ${red(r.loraFlops, b?.loraFlops)} | ` +
          `${red(r.bytes, b?.bytes)} | ${fmt(r.moduleSteps)} | ${r.seconds.toFixed(0)} | ` +
          `${isAll ? "all" : r.finalActive.join(" ")}`,
      );
    }
  }
}
// Means over seeds.
console.log("\nrun | rho | mean nll_active | mean nll_all | n");
const groups = new Map<string, RunResult[]>();
for (const r of results) {
  const key = `${r.run} | ${r.run.startsWith("all") ? 1 : r.rho}`;
  groups.set(key, [...(groups.get(key) ?? []), r]);
}
for (const [key, rs] of groups) {
  const mean = (f: (r: RunResult) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
  console.log(`${key} | ${fmt(mean((r) => r.nll))} | ${fmt(mean((r) => r.nllAll))} | ${rs.length}`);
}
if (flag("--json")) console.log(JSON.stringify({ rows: results }));
model.free();
k.close();
