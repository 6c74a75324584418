/**
 * An edge device (DLORA.md §2, §4, §7; Deno edge): registers when it has no token (capability
 * benchmark), finds its job, loads the base model's embedding, final norm and head (the blocks
 * stay on the coordinator), keeps its private text, LoRA adapters and AdamW state, and trains
 * over the job's step stream. Counts FLOPs per kind of work, bytes per message type and wall
 * time per step, and writes the PEFT adapter.
 *
 * Training follows runtime/train's `train` exactly where the job does not say otherwise (same
 * data order from mulberry32(seed), LoRA init seed, cosine schedule without warm-up, clipping at
 * 1, no weight decay), so an f32 run reproduces single-process LoRA up to float reassociation.
 */
import { Kernels } from "../../kernels/mod.ts";
import { type Adapter, writePeftAdapter } from "../adapters/peft.ts";
import { examplesToText, parseData } from "../data/text.ts";
import { sampleBatch } from "../data/windows.ts";
import { writeFiles } from "../formats/io.ts";
import { loadModel } from "../load.ts";
import { LlamaEnds } from "../model/ends.ts";
import type { TrainBatch } from "../model/llama.ts";
import { LocalLora, mulberry32 } from "../model/lora.ts";
import type { WireStatsJSON } from "../protocol/mod.ts";
import type { StreamCodecs } from "../protocol/stream.ts";
import type { ResolveOptions } from "../resolve.ts";
import { loraToAdapter } from "../train/adapter.ts";
import { learningRate, type Schedule } from "../train/schedule.ts";
import { type Capability, measureCapability } from "./capability.ts";
import { CoordinatorClient, type DeviceJob } from "./client.ts";
import { type DeviceFlops, totalFlops } from "./flops.ts";
import type { SelectionEventRecord } from "./selection.ts";
import { DeviceSession } from "./session.ts";
import { ConnectionClosed, type FrameTransport, openSessionSocket } from "./transport.ts";

export interface DeviceOptions {
  /** http://host:port of the coordinator. */
  coordinatorUrl: string;
  /** The device token; without it the device registers (enrollToken, or open registration). */
  token?: string;
  enrollToken?: string;
  /** Display name at registration. */
  name?: string;
  /** The job to join; default the device's only pending or running job. */
  jobId?: string;
  /** Wait this long for a job to appear when the device has none yet (default 0). */
  waitForJobMs?: number;
  /** Private data: a file (text, .jsonl, .tsv) or the text itself. */
  dataFile?: string;
  text?: string;
  /** Write the PEFT adapter here. */
  out?: string;
  /** The device's copy of the base model (default the job's base_model, resolved locally). */
  model?: string;
  tokenizer?: string;
  resolve?: ResolveOptions;
  /** Overrides the job's codecs for what this device sends. */
  codecs?: Partial<StreamCodecs>;
  /** Overrides the job's step count and seed. */
  steps?: number;
  seed?: number;
  /** Rows per micro-batch (default the job's whole batch in one). */
  microBatch?: number;
  /** Micro-batches in flight at once (default 2: pipelined; 1: one after another). */
  pipeline?: number;
  schedule?: Schedule;
  warmup?: number;
  /** Default 1 (0 = no clipping). */
  maxGradNorm?: number;
  weightDecay?: number;
  /** Kernel threads (default 1). */
  threads?: number;
  /** CRC-32 on the tensor frames sent (default off: TCP/TLS check the bytes; see stream.ts). */
  crc?: boolean;
  frameTimeoutMs?: number;
  /** Called after every step. */
  onStep?: (info: DeviceStepInfo) => void;
  /** Tests: a transport instead of the WebSocket. */
  transport?: (url: string, token: string) => Promise<FrameTransport>;
  /** Tests: sees each frame before it is sent and may send other frames first. */
  beforeSend?: (frame: Uint8Array, send: (frame: Uint8Array) => void) => void;
  /** Modules in the adapter written: those active at the end or all (default the job's kr.export). */
  export?: "active" | "all";
}

export interface DeviceStepInfo {
  /** 1-based. */
  step: number;
  steps: number;
  loss: number;
  lr: number;
  seconds: number;
  /** So far, over all steps. */
  bytesUp: number;
  bytesDown: number;
  /** Device FLOPs so far, over all steps and kinds. */
  flops: number;
  /** Modules trained in this step. */
  modules: number;
}

export interface DeviceResult {
  deviceId: string;
  jobId: string;
  session: number;
  /** The capability reported at registration (null when the device already had a token). */
  capability: Capability | null;
  /** A new device token (only when this run registered the device). */
  registeredToken: string | null;
  steps: number;
  tokens: number;
  losses: number[];
  bytesUp: number;
  bytesDown: number;
  wire: WireStatsJSON;
  flops: DeviceFlops;
  /** Wall time of each step. */
  stepSeconds: number[];
  /** Of the steps' wall time: computed here, and waiting (network + coordinator). */
  computeSeconds: number;
  waitSeconds: number;
  seconds: number;
  /** Modules active at the end: the coordinator's last decision, else those of the last step. */
  activeModules: string[];
  /** Σ over steps of the modules trained, and N·steps (every module every step). */
  moduleSteps: number;
  moduleStepsAll: number;
  /** Kill/revive/probe/promote/drop moves the coordinator sent, with their step. */
  selectionEvents: SelectionEventRecord[];
  /** Which modules the adapter holds. */
  exported: "active" | "all";
  adapter: Adapter;
  adapterDir: string | null;
  /** ERROR frames the coordinator sent (refused frames). */
  errors: { code: number; name: string | null; message: string }[];
}

/** The job to run: `jobId`, else the device's only pending/running job (waiting if allowed). */
async function chooseJob(client: CoordinatorClient, opts: DeviceOptions): Promise<DeviceJob> {
  if (opts.jobId) return await client.job(opts.jobId);
  const deadline = performance.now() + (opts.waitForJobMs ?? 0);
  for (;;) {
    const open = (await client.jobs()).filter((j) =>
      j.status === "pending" || j.status === "running"
    );
    if (open.length === 1) return open[0];
    if (open.length > 1) {
      throw new Error(
        `this device is enrolled in ${open.length} open jobs (${
          open.map((j) => j.id).join(", ")
        }); ` +
          `choose one with --job`,
      );
    }
    if (performance.now() >= deadline) {
      throw new Error(
        "this device is enrolled in no pending or running job; ask the operator to create one " +
          "(POST /v1/jobs with this device's id)",
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function readText(opts: DeviceOptions): Promise<string> {
  if (opts.text !== undefined) return opts.text;
  if (opts.dataFile === undefined) {
    throw new Error("runDevice: give the private data (--data FILE)");
  }
  let contents: string;
  try {
    contents = await Deno.readTextFile(opts.dataFile);
  } catch (e) {
    throw new Error(`--data ${opts.dataFile}: cannot read (${(e as Error).message})`);
  }
  const text = examplesToText(parseData(opts.dataFile, contents));
  if (text.length === 0) throw new Error(`--data ${opts.dataFile}: the file holds no text`);
  return text;
}

export async function runDevice(opts: DeviceOptions): Promise<DeviceResult> {
  const started = performance.now();
  const client = new CoordinatorClient(opts.coordinatorUrl, opts.token ?? null);
  const text = await readText(opts);
  const k = await Kernels.load({ threads: opts.threads ?? 1 });
  let ends: LlamaEnds | null = null;
  let lora: LocalLora | null = null;
  let session: DeviceSession | null = null;
  let transport: FrameTransport | null = null;
  try {
    let capability: Capability | null = null;
    let registeredToken: string | null = null;
    let deviceId: string;
    if (!opts.token) {
      capability = measureCapability(k);
      const reg = await client.register(capability, {
        enrollToken: opts.enrollToken,
        name: opts.name,
      });
      deviceId = reg.device_id;
      registeredToken = reg.token;
    } else deviceId = (await client.me()).id;
    const job = await chooseJob(client, opts);
    const steps = opts.steps ?? job.steps;
    const seed = opts.seed ?? job.seed;
    const B = job.batch, T = job.seq_len;
    const microBatch = Math.min(opts.microBatch ?? B, B);
    if (!Number.isInteger(microBatch) || microBatch < 1) {
      throw new RangeError(`micro-batch must be a positive integer, got ${opts.microBatch}`);
    }
    const codecs: StreamCodecs = { ...job.codec, ...opts.codecs };

    // Only the device's share of the model goes into wasm memory: embedding, final norm, head.
    const loaded = await loadModel(opts.model ?? job.base_model, {
      ...opts.resolve,
      tokenizer: opts.tokenizer,
      requireTokenizer: true,
    });
    const config = loaded.weights.config;
    ends = new LlamaEnds(k, loaded.weights);
    lora = new LocalLora(k, config, {
      rank: job.rank,
      alpha: job.alpha,
      targets: job.targets,
      seed,
      dropoutSeed: seed + 1,
    });
    const ids = loaded.tokenizer!.encode(text, { bos: true });
    if (ids.length < T + 1) {
      throw new RangeError(
        `the private data has ${ids.length} tokens; a window of the job's seq_len ${T} needs ` +
          `${T + 1} (give more text)`,
      );
    }

    const url = client.sessionUrl(job.id);
    transport = await (opts.transport ?? ((u, t) => openSessionSocket(u, t)))(url, client.token!);
    session = new DeviceSession({
      k,
      ends,
      lora,
      transport,
      codecs,
      frameTimeoutMs: opts.frameTimeoutMs,
      crc: opts.crc,
      beforeSend: opts.beforeSend,
      pipeline: opts.pipeline,
    });
    const losses: number[] = [], stepSeconds: number[] = [];
    let compute = 0, wait = 0, activeModules: string[] = [];
    try {
      await session.hello();
      const rand = mulberry32(seed);
      const maxGradNorm = opts.maxGradNorm ?? 1;
      for (let step = 0; step < steps; step++) {
        const micros: TrainBatch[] = [];
        for (let b0 = 0; b0 < B; b0 += microBatch) {
          const rows = Math.min(microBatch, B - b0);
          const { inputs, targets } = sampleBatch(ids, rows, T, rand);
          micros.push({ ids: inputs, targets, B: rows, T });
        }
        const lr = learningRate(step, {
          lr: job.lr,
          steps,
          warmup: opts.warmup ?? 0,
          schedule: opts.schedule ?? "cosine",
        });
        const r = await session.trainStep(step, micros, {
          lr,
          weightDecay: opts.weightDecay ?? 0,
          maxGradNorm: maxGradNorm > 0 ? maxGradNorm : undefined,
        });
        if (!Number.isFinite(r.loss)) {
          throw new Error(`the loss became ${r.loss} at step ${step + 1}; lower the job's lr`);
        }
        losses.push(r.loss);
        stepSeconds.push(r.seconds);
        compute += r.computeSeconds;
        wait += r.seconds - r.computeSeconds;
        activeModules = r.activeModules;
        opts.onStep?.({
          step: step + 1,
          steps,
          loss: r.loss,
          lr,
          seconds: r.seconds,
          bytesUp: session.stats.bytesUp,
          bytesDown: session.stats.bytesDown,
          flops: totalFlops(session.flops),
          modules: r.activeModules.length,
        });
      }
      // A report at the last step is answered with the final decision: wait for it.
      await session.awaitSelection(steps);
    } catch (e) {
      if (e instanceof ConnectionClosed) {
        const last = session.errors.at(-1);
        throw new Error(
          `${e.message}${
            last ? `; its last error: ${last.name ?? last.code}: ${last.message}` : ""
          }`,
        );
      }
      throw e;
    }
    transport.close(1000, "training finished");
    await transport.closed;

    const sel = session.selection;
    const modules = lora.moduleKeys();
    const chosen = new Set(sel.selected ?? activeModules);
    activeModules = modules.filter((m) => chosen.has(m));
    const krExport = (job.kr as { export?: unknown } | undefined)?.export;
    const exported = opts.export ?? (krExport === "all" ? "all" : "active");
    // The adapter's metadata (dlora_active_modules) and config record the final active set.
    lora.setActiveKeys(activeModules);
    const adapter = loraToAdapter(lora, { baseModel: job.base_model, which: exported });
    if (opts.out !== undefined) {
      await writeFiles(
        opts.out,
        writePeftAdapter(adapter, {
          extraConfig: { dlora: { active_modules: activeModules, exported } },
        }),
      );
    }
    return {
      deviceId,
      jobId: job.id,
      session: session.session,
      capability,
      registeredToken,
      steps,
      tokens: steps * B * T,
      losses,
      bytesUp: session.stats.bytesUp,
      bytesDown: session.stats.bytesDown,
      wire: session.stats.toJSON(),
      flops: { ...session.flops },
      stepSeconds,
      computeSeconds: compute,
      waitSeconds: wait,
      seconds: (performance.now() - started) / 1000,
      activeModules,
      moduleSteps: sel.moduleSteps,
      moduleStepsAll: modules.length * losses.length,
      selectionEvents: sel.events.map((e) => ({ ...e })),
      exported,
      adapter,
      adapterDir: opts.out ?? null,
      errors: [...session.errors],
    };
  } finally {
    if (transport !== null) {
      transport.close(1000, "device stopped");
    }
    session?.free();
    lora?.free();
    ends?.free();
    k.close();
  }
}

/** The CLI's JSON view of a run (snake_case, `flops` = the total). */
export function deviceResultJson(r: DeviceResult): Record<string, unknown> {
  const byType: Record<string, { bytes_up: number; bytes_down: number }> = {};
  for (const [type, c] of Object.entries(r.wire.byType)) {
    byType[type] = { bytes_up: c!.bytesUp, bytes_down: c!.bytesDown };
  }
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  return {
    device_id: r.deviceId,
    job_id: r.jobId,
    session: r.session,
    ...(r.capability
      ? {
        capability: {
          gflops: r.capability.gflops,
          threads: r.capability.threads,
          memory_mb: r.capability.memoryMb,
        },
      }
      : {}),
    steps: r.steps,
    tokens: r.tokens,
    losses: r.losses,
    bytes_up: r.bytesUp,
    bytes_down: r.bytesDown,
    bytes_by_type: byType,
    flops: totalFlops(r.flops),
    flops_by_kind: {
      lora_forward: r.flops.loraForward,
      lora_backward: r.flops.loraBackward,
      optimizer: r.flops.optimizer,
      embedding: r.flops.embedding,
      head: r.flops.head,
      loss: r.flops.loss,
    },
    step_seconds_mean: +mean(r.stepSeconds).toFixed(6),
    compute_seconds: +r.computeSeconds.toFixed(6),
    wait_seconds: +r.waitSeconds.toFixed(6),
    seconds: +r.seconds.toFixed(3),
    active_modules: r.activeModules.length,
    final_active: r.activeModules,
    module_steps: r.moduleSteps,
    module_steps_all: r.moduleStepsAll,
    kr_events: r.selectionEvents,
    exported: r.exported,
    adapter: r.adapterDir,
    refused_frames: r.errors.length,
  };
}
