/**
 * The main job (DLORA.md §2, §4, §8): a coordinator on loopback with the frozen blocks in its
 * worker, N devices in different tiers, each with its own private text split into train and
 * held-out parts, fine-tuning stories260K concurrently over the step stream. Measures each
 * device's held-out NLL before and after (same slice), bytes up and down and device FLOPs, and
 * writes each device's PEFT adapter and a JSON report.
 *
 * Everything runs in this process except the coordinator's model worker: the devices are
 * in-process `runDevice` calls, each with its own kernels, LoRA, optimizer state and data; they
 * reach the coordinator only through its HTTP API and WebSocket step stream on 127.0.0.1.
 */
import { StepExecutor } from "../../coordinator/executor.ts";
import type { Logger } from "../../coordinator/deps.ts";
import { serve } from "../../coordinator/serve.ts";
import { MemoryStore } from "../../coordinator/store.ts";
import { Kernels } from "../../kernels/mod.ts";
import { measureCapability } from "../device/capability.ts";
import { type DeviceStepInfo, runDevice } from "../device/device.ts";
import { totalFlops } from "../device/flops.ts";
import { joinPath } from "../formats/io.ts";
import { loadModel } from "../load.ts";
import { LlamaModel } from "../model/llama.ts";
import { loraFromAdapter } from "../train/adapter.ts";
import { nllOfIds } from "../train/nll.ts";
import { DEMO_SOURCES, readSource, splitFold } from "./data.ts";
import { estimateSavings, type SavingsEstimate, stepCosts } from "./savings.ts";

export type DemoCodec = "f32" | "f16" | "bf16" | "int8";
export const DEMO_CODECS: readonly DemoCodec[] = ["f32", "f16", "bf16", "int8"];
const TIER_ORDER = ["A", "B", "C"] as const;

export interface DemoOptions {
  /** Devices, 1–8 (default 3): sources round-robin, a different held-out fold each round. */
  devices?: number;
  steps?: number;
  codec?: DemoCodec;
  seed?: number;
  /** Kill and Revive (default on): each device trains its tier's budget ρ of the modules. */
  kr?: boolean;
  /**
   * With Kill and Revive, rank reallocation (`kr.rank_scale: "budget"`): the kept modules grow
   * until they hold every module's LoRA parameters (default false).
   */
  rankRealloc?: boolean;
  /** Output folder: one sub-folder per device (adapter + report.json) and demo.json. */
  out: string;
  /** Job shape (defaults sized for a run under 3 minutes on 2 cores). */
  batch?: number;
  seqLen?: number;
  rank?: number;
  lr?: number;
  /** Held-out tokens evaluated per device, before and after (default 8192). */
  evalTokens?: number;
  /** Windows of the held-out NLL (default 256, §7). */
  evalSeqLen?: number;
  /** Fraction of each device's text held out (default 0.1). */
  heldOut?: number;
  /** Characters of private text per device (default 400k: bounds tokenizing time). */
  maxChars?: number;
  /** The base model (default stories260K). */
  model?: string;
  /** Stage messages (default none). */
  log?: (line: string) => void;
  /** After each device step. */
  onStep?: (device: number, info: DeviceStepInfo) => void;
  /** Once the devices are registered and tiered, before training. */
  onDevices?: (devices: readonly DemoDeviceSetup[]) => void;
}

export interface DemoDeviceSetup {
  index: number;
  id: string;
  name: string;
  source: string;
  tier: string;
  /** "policy" (from its capability report) or "operator" (the demo's override). */
  tierSource: string;
  tierReason: string;
  rho: number;
  /** Sequences per micro-batch on the step stream: the tier's, within the job's batch. */
  microBatch: number;
  gflops: number;
}

export interface DemoDevice extends DemoDeviceSetup {
  jobId: string;
  trainChars: number;
  heldOutChars: number;
  evalTokens: number;
  losses: number[];
  nllBefore: number;
  nllAfter: number;
  bytesUp: number;
  bytesDown: number;
  flops: number;
  tokens: number;
  seconds: number;
  adapter: string;
  report: string;
  /** Module selection: policy, modules, what was active at the end, moves. */
  selection: {
    policy: "kr" | "all";
    modules: number;
    activeEnd: string[];
    moduleStepsFrac: number;
    kills: number;
    revives: number;
  };
  /** Against the same run with every module active, estimated from the warm-up steps. */
  savings: SavingsEstimate;
}

export interface DemoResult {
  devices: DemoDevice[];
  wallSeconds: number;
  trainSeconds: number;
  codec: DemoCodec;
  /** Kill and Revive on. */
  kr: boolean;
  /** With rank reallocation (kr.rank_scale "budget"). */
  rankRealloc: boolean;
  coordinator: string;
  out: string;
  steps: number;
  batch: number;
  seqLen: number;
  rank: number;
}

/** Defaults measured on the 2-vCPU machine class (DLORA.md §9): about 80 s for 3 devices. */
export const DEMO_DEFAULTS = {
  devices: 3,
  steps: 150,
  batch: 8,
  seqLen: 64,
  rank: 8,
  lr: 1e-2,
  evalTokens: 8192,
  evalSeqLen: 256,
  heldOut: 0.1,
  maxChars: 400_000,
};

/** The coordinator's log: warnings and errors only (info lines would tear the progress lines). */
function quietLogger(log: (line: string) => void): Logger {
  const line = (level: string) => (m: string, f?: Record<string, unknown>) =>
    log(`coordinator ${level}: ${m}${f ? ` ${JSON.stringify(f)}` : ""}`);
  return { info: () => {}, warn: line("warn"), error: line("error") };
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const started = performance.now();
  const d = { ...DEMO_DEFAULTS };
  const n = opts.devices ?? d.devices;
  if (!Number.isInteger(n) || n < 1 || n > 8) {
    throw new RangeError(`devices must be an integer in 1..8, got ${n}`);
  }
  const steps = opts.steps ?? d.steps, batch = opts.batch ?? d.batch;
  const seqLen = opts.seqLen ?? d.seqLen, rank = opts.rank ?? d.rank;
  const codec = opts.codec ?? "f32", seed = opts.seed ?? 0, kr = opts.kr ?? true;
  const rankRealloc = kr && (opts.rankRealloc ?? false);
  const evalTokens = opts.evalTokens ?? d.evalTokens;
  const evalSeqLen = opts.evalSeqLen ?? d.evalSeqLen;
  const modelName = opts.model ?? "stories260K";
  if (!DEMO_CODECS.includes(codec)) {
    throw new RangeError(`codec must be one of ${DEMO_CODECS.join(", ")}, got ${codec}`);
  }
  const log = opts.log ?? (() => {});

  // Each device's private data: its source, its own held-out fold.
  const sourceTexts = new Map<number, string>();
  const data: { source: string; train: string; heldOut: string }[] = [];
  for (let i = 0; i < n; i++) {
    const s = i % DEMO_SOURCES.length;
    if (!sourceTexts.has(s)) sourceTexts.set(s, await readSource(DEMO_SOURCES[s]));
    const split = splitFold(sourceTexts.get(s)!, {
      heldOut: opts.heldOut ?? d.heldOut,
      fold: Math.floor(i / DEMO_SOURCES.length),
      maxChars: opts.maxChars ?? d.maxChars,
    });
    data.push({ source: DEMO_SOURCES[s].name, ...split });
  }

  // The evaluator: the full base model, here and not on the coordinator, used before and after.
  const loaded = await loadModel(modelName, { requireTokenizer: true });
  const tokenizer = loaded.tokenizer!;
  const k = await Kernels.load({ threads: 1 });
  const model = new LlamaModel(k, loaded.weights);
  const adminToken = randomToken();
  const coordinator = await serve({
    port: 0,
    host: "127.0.0.1",
    store: new MemoryStore(),
    adminToken,
    log: quietLogger(log),
    // Several devices share 127.0.0.1 here: no per-address rate limit to trip over.
    config: { rateLimit: { perSecond: 1e4, burst: 1e4, maxKeys: 1000 } },
    executor: (deps) => new StepExecutor({ ...deps, threads: 1 }),
  });
  try {
    log(`coordinator on ${coordinator.url} (in-memory store; frozen blocks in a worker)`);
    const admin = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${coordinator.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = await res.json();
      if (!res.ok) {
        throw new Error(`coordinator ${method} ${path}: ${res.status} ${json?.error?.message}`);
      }
      return json as Record<string, unknown>;
    };

    // Registration: each device reports its own capability benchmark; the policy tiers it.
    const reg: {
      id: string;
      token: string;
      name: string;
      gflops: number;
      view: Record<string, unknown>;
    }[] = [];
    for (let i = 0; i < n; i++) {
      const cap = measureCapability(k, { ms: 150 });
      const name = `device-${i + 1}-${data[i].source}`;
      const r = await admin("POST", "/v1/devices", {
        name,
        capability: { gflops: cap.gflops, threads: cap.threads, memory_mb: cap.memoryMb },
      });
      const view = await admin("GET", `/v1/devices/${r.device_id}`);
      reg.push({
        id: r.device_id as string,
        token: r.token as string,
        name,
        gflops: cap.gflops,
        view,
      });
    }
    // The demo's devices share this one machine, so their benchmarks differ only by noise
    // (under load they can land in any mix of tiers); to show a heterogeneous fleet the
    // operator spreads them over A, B, C in turn, as an operator may (PATCH /v1/devices/:id).
    if (n > 1) {
      const measured = reg.map((r) => r.view.tier).join(",");
      log(
        `devices on one machine benchmark alike (measured tiers ${measured}): ` +
          `the operator overrides their tiers A, B, C in turn (PATCH /v1/devices/:id)`,
      );
      for (const [i, r] of reg.entries()) {
        r.view = await admin("PATCH", `/v1/devices/${r.id}`, { tier: TIER_ORDER[i % 3] });
      }
    }
    const setups: DemoDeviceSetup[] = reg.map((r, i) => ({
      index: i,
      id: r.id,
      name: r.name,
      source: data[i].source,
      tier: r.view.tier as string,
      tierSource: r.view.tier_source as string,
      tierReason: r.view.tier_reason as string,
      rho: r.view.rho as number,
      // The tier's micro-batch, within the job's batch (runDevice caps it the same way).
      microBatch: Math.min(r.view.micro_batch as number, batch),
      gflops: r.gflops,
    }));
    opts.onDevices?.(setups);

    // Held-out NLL before: the same bounded slice of each device's held-out text as after.
    const evalIds = data.map((x) =>
      tokenizer.encode(x.heldOut, { bos: true }).slice(0, evalTokens)
    );
    const before: number[] = [];
    for (const [i, ids] of evalIds.entries()) {
      if (ids.length < 2) throw new Error(`device ${i + 1}: its held-out text is empty`);
      before.push((await nllOfIds(model, ids, evalSeqLen)).mean_nll);
    }
    log(`held-out NLL before: ${before.map((x) => x.toFixed(3)).join(", ")}`);

    // One job per device (its own seed); every device trains at once over the step stream.
    const jobs: string[] = [];
    for (const [i, s] of setups.entries()) {
      const j = await admin("POST", "/v1/jobs", {
        name: `demo ${s.name}`,
        base_model: modelName,
        rank,
        alpha: 2 * rank,
        lr: opts.lr ?? d.lr,
        steps,
        batch,
        seq_len: seqLen,
        seed: seed + i,
        codec: { activations: codec, gradients: codec },
        // Kill and Revive at the device's tier budget ρ; the other options are the defaults.
        ...(kr ? { kr: { policy: "kr", ...(rankRealloc ? { rank_scale: "budget" } : {}) } } : {}),
        devices: [s.id],
      });
      jobs.push(j.id as string);
    }
    const trainStart = performance.now();
    const counters = setups.map(() => [] as { flops: number; bytes: number; modules: number }[]);
    const results = await Promise.all(setups.map((s, i) =>
      runDevice({
        coordinatorUrl: coordinator.url,
        token: reg[i].token,
        jobId: jobs[i],
        text: data[i].train,
        out: joinPath(opts.out, s.name),
        microBatch: s.microBatch,
        threads: 1,
        onStep: (info) => {
          counters[i].push({
            flops: info.flops,
            bytes: info.bytesUp + info.bytesDown,
            modules: info.modules,
          });
          opts.onStep?.(i, info);
        },
      })
    ));
    const trainSeconds = (performance.now() - trainStart) / 1000;

    const devices: DemoDevice[] = [];
    for (const [i, r] of results.entries()) {
      const lora = loraFromAdapter(k, loaded.weights.config, r.adapter);
      let after: number;
      try {
        after = (await nllOfIds(model, evalIds[i], evalSeqLen, { hooks: lora })).mean_nll;
      } finally {
        lora.free();
      }
      const dir = joinPath(opts.out, setups[i].name);
      const dev: DemoDevice = {
        ...setups[i],
        jobId: r.jobId,
        trainChars: data[i].train.length,
        heldOutChars: data[i].heldOut.length,
        evalTokens: evalIds[i].length,
        losses: r.losses,
        nllBefore: before[i],
        nllAfter: after,
        bytesUp: r.bytesUp,
        bytesDown: r.bytesDown,
        flops: totalFlops(r.flops),
        tokens: r.tokens,
        seconds: r.seconds,
        adapter: dir,
        report: joinPath(dir, "report.json"),
        selection: {
          policy: kr ? "kr" : "all",
          modules: r.moduleStepsAll / Math.max(1, r.losses.length),
          activeEnd: r.activeModules,
          moduleStepsFrac: r.moduleStepsAll > 0 ? r.moduleSteps / r.moduleStepsAll : 1,
          kills: r.selectionEvents.filter((e) => e.kind === "kill").length,
          revives: r.selectionEvents.filter((e) => e.kind === "revive" || e.kind === "probe")
            .length,
        },
        savings: estimateSavings(
          stepCosts(counters[i]),
          r.moduleStepsAll / Math.max(1, r.losses.length),
        ),
      };
      await Deno.writeTextFile(
        dev.report,
        JSON.stringify(
          {
            ...demoDeviceJson(dev),
            wire: r.wire,
            flops_by_kind: r.flops,
            step_seconds: r.stepSeconds,
            compute_seconds: r.computeSeconds,
            wait_seconds: r.waitSeconds,
            active_modules: r.activeModules,
            kr_events: r.selectionEvents,
            refused_frames: r.errors.length,
          },
          null,
          2,
        ) + "\n",
      );
      devices.push(dev);
    }
    const result: DemoResult = {
      devices,
      wallSeconds: (performance.now() - started) / 1000,
      trainSeconds,
      codec,
      kr,
      rankRealloc,
      coordinator: coordinator.url,
      out: opts.out,
      steps,
      batch,
      seqLen,
      rank,
    };
    await Deno.writeTextFile(
      joinPath(opts.out, "demo.json"),
      JSON.stringify(demoResultJson(result), null, 2) + "\n",
    );
    return result;
  } finally {
    await coordinator.shutdown();
    model.free();
    k.close();
  }
}

const round = (x: number, digits = 4) => +x.toFixed(digits);

export function demoDeviceJson(d: DemoDevice): Record<string, unknown> {
  return {
    id: d.id,
    name: d.name,
    source: d.source,
    tier: d.tier,
    tier_source: d.tierSource,
    rho: d.rho,
    micro_batch: d.microBatch,
    job_id: d.jobId,
    train_chars: d.trainChars,
    held_out_chars: d.heldOutChars,
    eval_tokens: d.evalTokens,
    losses: d.losses.map((x) => round(x, 5)),
    nll_before: round(d.nllBefore),
    nll_after: round(d.nllAfter),
    bytes_up: d.bytesUp,
    bytes_down: d.bytesDown,
    flops: d.flops,
    tokens: d.tokens,
    seconds: round(d.seconds, 2),
    adapter: d.adapter,
    report: d.report,
    kr: {
      policy: d.selection.policy,
      budget: d.selection.policy === "kr" ? d.rho : 1,
      modules: d.selection.modules,
      active_end: d.selection.activeEnd.length,
      active_modules: d.selection.activeEnd,
      module_steps_frac: round(d.selection.moduleStepsFrac),
      kills: d.selection.kills,
      revives: d.selection.revives,
    },
    // Estimated, not measured: all-modules cost from the steps that trained every module.
    savings_estimated: {
      flops: d.savings.flops === null ? null : round(d.savings.flops),
      bytes: d.savings.bytes === null ? null : round(d.savings.bytes),
      basis: `median of the ${d.savings.basisSteps} steps that trained every module × steps`,
    },
  };
}

/** The `--json` line: `{devices: [...], wall_s, codec, ...}`. */
export function demoResultJson(r: DemoResult): Record<string, unknown> {
  return {
    devices: r.devices.map(demoDeviceJson),
    wall_s: round(r.wallSeconds, 2),
    train_s: round(r.trainSeconds, 2),
    codec: r.codec,
    kr: r.kr,
    rank_realloc: r.rankRealloc,
    steps: r.steps,
    batch: r.batch,
    seq_len: r.seqLen,
    rank: r.rank,
    out: r.out,
  };
}
