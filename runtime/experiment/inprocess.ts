/**
 * One device's training run with the real split system in one thread (issue 5's experiment):
 * the real `CoordinatorSession` (frozen blocks, module-selection driver) and the real
 * `DeviceSession` (embedding, head, LoRA, AdamW, scores) joined by an in-memory transport. Every
 * frame is encoded and decoded exactly as on a WebSocket, so the bytes counted are those of real
 * frames; only the socket is missing.
 *
 * Training follows runDevice (runtime/device/device.ts): data order from mulberry32(seed) over
 * `trainIds`, LoRA init seed = seed, cosine schedule without warm-up, clipping at 1, no weight
 * decay, the whole batch in one micro-batch — so with kr `all` (or null) and f32 the losses equal
 * local training (LlamaModel.trainStep) up to float reassociation.
 *
 * `trainIds` is the token-id array of the device's private text (`Int32Array` or `number[]`, as
 * `tokenizer.encode` returns). The result's `lora` lives in a Kernels instance made for the run:
 * the caller frees both, `r.lora.free(); r.lora.k.close()`.
 */
import type { KrOptions } from "../../coordinator/scheduler/options.ts";
import {
  CoordinatorSession,
  type SessionSpec,
  type StepReport,
} from "../../coordinator/session.ts";
import { Kernels } from "../../kernels/mod.ts";
import { sampleBatch } from "../data/windows.ts";
import type { DeviceFlops } from "../device/flops.ts";
import { DeviceSession } from "../device/session.ts";
import { ConnectionClosed, type FrameTransport } from "../device/transport.ts";
import { LlamaBlocks } from "../model/blocks.ts";
import { LlamaEnds } from "../model/ends.ts";
import { LocalLora, mulberry32 } from "../model/lora.ts";
import type { Proj } from "../model/modules.ts";
import type { LlamaWeights } from "../model/weights.ts";
import { Mailbox } from "../protocol/mailbox.ts";
import type { StreamCodecs } from "../protocol/stream.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { learningRate } from "../train/schedule.ts";

export type { DeviceFlops, KrOptions };

export interface InProcessRun {
  /** Loaded base model (runtime/load.ts loadModel). */
  weights: LlamaWeights;
  /** The model's tokenizer (the ids are already tokenized; kept for callers' evaluation). */
  tokenizer: Tokenizer;
  /** The device's tokenized training ids. */
  trainIds: Int32Array | number[];
  job: {
    rank: number;
    alpha: number;
    lr: number;
    steps: number;
    batch: number;
    seqLen: number;
    seed: number;
    targets: Proj[];
    codec: "f32" | "bf16" | "f16" | "int8";
    kr: KrOptions | null;
  };
  /** Budget ρ of the device's tier. */
  tierRho: number;
  threads?: number;
  onStep?: (step: number, loss: number) => void;
}

export interface InProcessResult {
  losses: number[];
  stepSeconds: number[];
  wallSeconds: number;
  /** Device FLOPs by kind. */
  flops: DeviceFlops;
  /** By message type, real encoded frame bytes (up = device → coordinator). */
  bytesUp: Record<string, number>;
  bytesDown: Record<string, number>;
  /** Σ over steps of the modules trained, and N·steps. */
  moduleSteps: number;
  moduleStepsAll: number;
  events: { step: number; kind: string; module: string; score?: number }[];
  /** Modules the coordinator left active (and probing) at the end, in module order. */
  finalActive: string[];
  /** The device's adapters after training (caller frees: `lora.free(); lora.k.close()`). */
  lora: LocalLora;
}

const SESSION = 1;
const DEVICE_ID = "dev_inprocess";

export async function runInProcess(o: InProcessRun): Promise<InProcessResult> {
  const { job } = o;
  const T = job.seqLen, B = job.batch;
  if (o.trainIds.length < T + 1) {
    throw new RangeError(
      `runInProcess: ${o.trainIds.length} training ids; a window of seqLen ${T} needs ${T + 1}`,
    );
  }
  const started = performance.now();
  const k = await Kernels.load({ threads: o.threads ?? 1 });
  const config = o.weights.config;
  let lora: LocalLora | null = null;
  let ends: LlamaEnds | null = null;
  let device: DeviceSession | null = null;
  let session: CoordinatorSession | null = null;
  let keep = false;
  try {
    lora = new LocalLora(k, config, {
      rank: job.rank,
      alpha: job.alpha,
      targets: job.targets,
      seed: job.seed,
      dropoutSeed: job.seed + 1,
    });
    ends = new LlamaEnds(k, o.weights);
    const blocks = new LlamaBlocks(k, config, o.weights.layers);
    const codecs: StreamCodecs = { activations: job.codec, gradients: job.codec, topk: null };
    const spec: SessionSpec = {
      session: SESSION,
      jobId: "inprocess",
      deviceId: DEVICE_ID,
      targets: lora.targets,
      codecs,
      maxBatch: B,
      maxSeqLen: T,
      ...(job.kr
        ? {
          selection: {
            kr: job.kr,
            totalSteps: job.steps,
            stepsPerPass: Math.max(1, Math.floor(o.trainIds.length / (B * T))),
            seed: job.seed,
            tier: null,
            tierRho: o.tierRho,
            rank: job.rank,
          },
        }
        : {}),
    };
    const pair = connectInProcess({ k, blocks, ends, lora, spec, codecs });
    session = pair.session;
    device = pair.device;
    const transport = pair.transport;
    await device.hello();
    const rand = mulberry32(job.seed);
    const losses: number[] = [], stepSeconds: number[] = [];
    for (let step = 0; step < job.steps; step++) {
      const { inputs, targets } = sampleBatch(o.trainIds, B, T, rand);
      const lr = learningRate(step, {
        lr: job.lr,
        steps: job.steps,
        warmup: 0,
        schedule: "cosine",
      });
      const r = await device.trainStep(step, [{ ids: inputs, targets, B, T }], {
        lr,
        weightDecay: 0,
        maxGradNorm: 1,
      });
      if (!Number.isFinite(r.loss)) {
        throw new Error(`runInProcess: the loss became ${r.loss} at step ${step + 1}; lower lr`);
      }
      losses.push(r.loss);
      stepSeconds.push(r.seconds);
      o.onStep?.(step + 1, r.loss);
    }
    await device.awaitSelection(job.steps);
    transport.close(1000, "training finished");
    await session.finished;

    const bytesUp: Record<string, number> = {}, bytesDown: Record<string, number> = {};
    for (const [type, c] of Object.entries(device.stats.toJSON().byType)) {
      if (c!.bytesUp > 0) bytesUp[type] = c!.bytesUp;
      if (c!.bytesDown > 0) bytesDown[type] = c!.bytesDown;
    }
    const modules = lora.moduleKeys();
    const chosen = new Set(device.selection.selected ?? device.selection.lastTrained);
    keep = true;
    return {
      losses,
      stepSeconds,
      wallSeconds: (performance.now() - started) / 1000,
      flops: { ...device.flops },
      bytesUp,
      bytesDown,
      moduleSteps: device.selection.moduleSteps,
      moduleStepsAll: modules.length * job.steps,
      events: device.selection.events.map((e) => ({ ...e })),
      finalActive: modules.filter((m) => chosen.has(m)),
      lora,
    };
  } finally {
    if (session !== null && !session.ended) session.close(1011, "runInProcess failed", "internal");
    await session?.finished.catch(() => {});
    device?.free();
    ends?.free();
    if (!keep) {
      lora?.free();
      k.close();
    }
  }
}

export interface InProcessPair {
  session: CoordinatorSession;
  device: DeviceSession;
  /** The device's end of the in-memory connection. */
  transport: FrameTransport;
}

/**
 * A CoordinatorSession on `blocks` and a DeviceSession on `ends` + `lora`, joined in memory:
 * each frame one side encodes is delivered, as bytes, to the other. The session frees `blocks`
 * when it ends; the rest stays the caller's.
 */
export function connectInProcess(o: {
  k: Kernels;
  blocks: LlamaBlocks;
  ends: LlamaEnds;
  lora: LocalLora;
  spec: SessionSpec;
  codecs: StreamCodecs;
  /** Sees the coordinator's step reports (decisions included). */
  onReport?: (r: StepReport) => void;
  /** Tests: sees each device frame before it is sent (DeviceSessionOptions.beforeSend). */
  beforeSend?: (frame: Uint8Array, send: (frame: Uint8Array) => void) => void;
}): InProcessPair {
  // Coordinator → device frames; the session's end closes the device's side.
  const down = new Mailbox<Uint8Array>();
  let closed!: (v: { code: number; reason: string }) => void;
  const whenClosed = new Promise<{ code: number; reason: string }>((r) => (closed = r));
  const session = new CoordinatorSession(Promise.resolve({ k: o.k, blocks: o.blocks }), o.spec, {
    send: (frame) => down.push(frame),
    step: (r) => o.onReport?.(r),
    end: (code, reason) => {
      down.close(new ConnectionClosed(code, reason), { drain: true });
      closed({ code, reason });
    },
  });
  const s = session;
  const transport: FrameTransport = {
    send(frame) {
      if (s.ended) throw down.closed ?? new ConnectionClosed(1006, "the session has ended");
      s.deliver(frame);
    },
    next: (timeoutMs, what) => down.next(timeoutMs, what),
    close: (code = 1000, reason = "") => s.close(code, reason),
    closed: whenClosed,
  };
  const device = new DeviceSession({
    k: o.k,
    ends: o.ends,
    lora: o.lora,
    transport,
    codecs: o.codecs,
    beforeSend: o.beforeSend,
  });
  return { session, device, transport };
}

/** The module keys a job has (for callers sizing budgets): every target in every layer. */
export function jobModules(weights: LlamaWeights, targets: readonly Proj[]): string[] {
  const out: string[] = [];
  for (let l = 0; l < weights.config.nLayers; l++) for (const p of targets) out.push(`${l}.${p}`);
  return out;
}
