/**
 * The device's side of one step-stream session (DLORA.md §2): it holds the private data's
 * embedding/head (frozen `LlamaEnds`), the LoRA adapters and their AdamW state (`LocalLora`), and
 * answers the coordinator's frames. Per micro-batch: embed → ↑ HIDDEN_H0; each ↓ GROUP_INPUT is
 * answered with ↑ DELTA_Y (loraForward); ↓ HIDDEN_HL → head, loss → ↑ GRAD_HL; each ↓ GROUP_GRAD
 * with ↑ GRAD_X_LORA (loraBackward, accumulating ∂A, ∂B; none when the frame asks for no ∂X:
 * the first active group); ↓ STEP_END closes the micro-batch.
 * After the step's last micro-batch: clipping, AdamW on the modules the coordinator exchanged
 * in this step (the others are detached: no update), ↑ STEP_END.
 * Micro-batches are pipelined (`pipeline`, default 2 in flight): the next one's HIDDEN_H0 goes
 * out before the last one's STEP_END(m), so the coordinator computes one while the device answers
 * the other; each frame is served by its `micro` (LocalLora.usePass keeps their states apart).
 *
 * Token ids, labels and text never leave this object: only h0, ΔY, ∂L/∂hL and ∂X_lora do.
 * Transport-agnostic (a FrameTransport); FLOPs and bytes are counted here.
 */
import type { F32, Kernels } from "../../kernels/mod.ts";
import type { LlamaEnds } from "../model/ends.ts";
import { PROJ_GROUPS } from "../model/hooks.ts";
import type { TrainBatch } from "../model/llama.ts";
import type { LocalLora } from "../model/lora.ts";
import { moduleKey, type Proj, projDims } from "../model/modules.ts";
import type { LlamaConfig } from "../model/weights.ts";
import {
  type Codec,
  CODECS,
  DecodeBuffers,
  decodeFrame,
  encodeControlFrame,
  encodeTensorFrame,
  type ErrorFrame,
  type Frame,
  type Limits,
  PROTOCOL_VERSION,
  ProtocolError,
  resolveLimits,
  type TensorFrame,
  TopkFeedback,
  WireStats,
} from "../protocol/mod.ts";
import {
  encodeOptionsFor,
  STREAM_ERROR_CODES,
  type StreamCodecs,
  streamErrorName,
} from "../protocol/stream.ts";
import {
  type DeviceFlops,
  headBackwardFlops,
  headForwardFlops,
  lossFlops,
  optimizerFlops,
  zeroFlops,
} from "./flops.ts";
import { DeviceSelection } from "./selection.ts";
import type { FrameTransport } from "./transport.ts";

export interface DeviceSessionOptions {
  k: Kernels;
  ends: LlamaEnds;
  lora: LocalLora;
  transport: FrameTransport;
  /** What the device sends in. */
  codecs: StreamCodecs;
  /** Longest wait for a coordinator frame (default 120 s; the first HELLO may wait for a model load). */
  frameTimeoutMs?: number;
  limits?: Partial<Limits>;
  /** CRC-32 on the tensor frames sent (default TENSOR_CRC_DEFAULT: off, see stream.ts). */
  crc?: boolean;
  /** Tests: sees each frame before it is sent and may send other frames first. */
  beforeSend?: (frame: Uint8Array, send: (frame: Uint8Array) => void) => void;
  /** Micro-batches of a step in flight at once (default 2; 1 runs them one after another). */
  pipeline?: number;
}

/** Micro-batches in flight by default: the coordinator computes one while the device serves the other. */
export const DEFAULT_PIPELINE = 2;

export interface StepOptions {
  lr: number;
  weightDecay?: number;
  /** Clip the global gradient norm of the step's modules (undefined: no clipping). */
  maxGradNorm?: number;
}

export interface DeviceStepResult {
  /** Mean loss over the step's counted targets (before the update). */
  loss: number;
  gradNorm: number;
  count: number;
  /** Wall time of the step. */
  seconds: number;
  /** Of which this device computed (embedding, LoRA, head, optimizer, codecs). */
  computeSeconds: number;
  /** Modules exchanged (and updated) in this step. */
  activeModules: string[];
}

/** The coordinator broke the protocol in a way the device cannot answer. */
export class DeviceProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeviceProtocolError";
  }
}

export class DeviceSession {
  /** Session id the coordinator assigned in its HELLO. */
  session = 0;
  readonly stats = new WireStats("device");
  readonly flops: DeviceFlops = zeroFlops();
  /** ERROR frames the coordinator sent (refusals are informative; fatal ones end the session). */
  readonly errors: { code: number; name: string | null; message: string }[] = [];
  readonly config: LlamaConfig;
  /** Module selection: SELECTs followed, scores reported, module-steps and events counted. */
  readonly selection: DeviceSelection;
  readonly #o: DeviceSessionOptions;
  readonly #limits: Limits;
  readonly #timeout: number;
  readonly #feedback: TopkFeedback;
  /** X of each (layer, group) kept from its forward until its backward (LocalLora's contract). */
  readonly #inputs = new Map<string, F32>();
  /** Scratch per projection / width: ΔY and G buffers, ∂X. */
  readonly #scratch = new Map<string, F32>();
  /** Decoded values are reused: trainStep consumes each frame's before it awaits the next. */
  readonly #decoded = new DecodeBuffers();
  #computeMs = 0;

  constructor(opts: DeviceSessionOptions) {
    this.#o = opts;
    this.config = opts.ends.config;
    this.#limits = resolveLimits(opts.limits);
    this.#timeout = opts.frameTimeoutMs ?? 120_000;
    this.#feedback = new TopkFeedback(opts.k);
    this.selection = new DeviceSelection(opts.lora);
    const pipeline = opts.pipeline ?? DEFAULT_PIPELINE;
    if (!Number.isInteger(pipeline) || pipeline < 1) {
      throw new RangeError(`DeviceSession: pipeline must be a positive integer, got ${pipeline}`);
    }
  }

  /** Sends HELLO and waits for the coordinator's (which comes once the base model is loaded). */
  async hello(timeoutMs = 600_000): Promise<void> {
    this.#send(encodeControlFrame({
      type: "HELLO",
      session: 0,
      step: 0,
      hello: {
        role: "device",
        minVersion: PROTOCOL_VERSION,
        maxVersion: PROTOCOL_VERSION,
        codecs: Object.keys(CODECS) as Codec[],
        maxFrameBytes: this.#limits.maxFrameBytes,
      },
    }));
    const f = await this.#next("HELLO", timeoutMs);
    if (f.type !== "HELLO" || f.hello.role !== "coordinator") {
      throw new DeviceProtocolError(`expected the coordinator's HELLO, got ${f.type}`);
    }
    this.session = f.session;
  }

  /**
   * One optimizer step over `micros` (gradients summed, scaled to the mean over all their
   * targets), exactly as LlamaModel.trainStep does in one process.
   */
  async trainStep(
    step: number,
    micros: readonly TrainBatch[],
    opts: StepOptions,
  ): Promise<DeviceStepResult> {
    const { lora, ends } = this.#o;
    const t0 = performance.now();
    this.#computeMs = 0;
    let count = 0;
    for (const b of micros) {
      for (let i = 0; i < b.targets.length; i++) if (b.targets[i] !== -1) count++;
    }
    const scale = count > 0 ? 1 / count : 0;
    const active = new Set<string>();
    let sum = 0;
    lora.zeroGrad();
    const depth = Math.min(this.#o.pipeline ?? DEFAULT_PIPELINE, micros.length);
    const D = this.config.dim, V = this.config.vocabSize;
    let started = 0, finished = 0;
    const inFlight = new Set<number>();
    const start = () => {
      const micro = started++, b = micros[micro];
      inFlight.add(micro);
      this.#compute(() => {
        const h0 = ends.embed(b.ids, b);
        this.#sendTensor("HIDDEN_H0", { step, micro }, 0, [], [{ data: h0, shape: [b.B, b.T, D] }]);
      });
    };
    try {
      while (started < depth) start();
      while (finished < micros.length) {
        const f = await this.#next("a frame of the step", this.#timeout);
        if (
          f.type !== "STEP_END" && f.type !== "HIDDEN_HL" && f.type !== "GROUP_INPUT" &&
          f.type !== "GROUP_GRAD"
        ) {
          throw new DeviceProtocolError(
            `unexpected ${f.type} from the coordinator in step ${step} micro-batch ${f.micro}`,
          );
        }
        this.#check(f, step, inFlight);
        const micro = f.micro, b = micros[micro], M = b.B * b.T;
        const at = { step, micro };
        if (f.type === "STEP_END") {
          inFlight.delete(micro);
          finished++;
          if (started < micros.length) start();
          continue;
        }
        if (f.type === "HIDDEN_HL") {
          this.#compute(() => {
            const r = ends.headForward(f.tensors[0].data, b.targets, b, { grad: true });
            this.flops.head += headForwardFlops(M, D, V);
            this.flops.loss += lossFlops(M, V);
            if (r.count > 0) sum += r.mean * r.count;
            if (!Number.isFinite(r.mean) && r.count > 0) {
              this.#abort(at, `the loss is ${r.mean}`);
            }
            const dh = ends.headBackward({ scale });
            this.flops.head += headBackwardFlops(M, D, V);
            this.#sendTensor("GRAD_HL", at, 0, [], [{ data: dh, shape: [b.B, b.T, D] }]);
          });
          continue;
        }
        lora.usePass(micro);
        if (f.type === "GROUP_INPUT") this.#compute(() => this.#loraForward(f, M, active));
        else this.#compute(() => this.#loraBackward(f, M));
      }
    } finally {
      lora.usePass(0);
    }
    let gradNorm = 0;
    this.#compute(() => {
      // Modules the coordinator did not exchange this step are detached: no optimizer update.
      lora.setActiveKeys(active);
      const params = lora.parameterCount(active);
      const { maxGradNorm, ...adam } = opts;
      this.selection.afterBackward(active);
      gradNorm = maxGradNorm !== undefined ? lora.clipGradNorm(maxGradNorm) : lora.gradNorm();
      // Kill and Revive may scale the lr of the modules trained after the warm-up (SELECT).
      lora.step({
        ...adam,
        lr: adam.lr * this.selection.lrScale,
        weightDecay: adam.weightDecay ?? 0,
      });
      const clipped = maxGradNorm !== undefined && maxGradNorm / (gradNorm + 1e-6) < 1;
      this.flops.optimizer += optimizerFlops(params, clipped);
      const scores = this.selection.afterStep(step + 1, active);
      if (scores !== null) {
        this.#send(encodeControlFrame({ type: "SCORES", session: this.session, step, scores }));
      }
      this.#send(encodeControlFrame({ type: "STEP_END", session: this.session, step }));
    });
    const seconds = (performance.now() - t0) / 1000;
    return {
      loss: count > 0 ? sum / count : NaN,
      gradNorm,
      count,
      seconds,
      computeSeconds: this.#computeMs / 1000,
      activeModules: [...active],
    };
  }

  /**
   * After the last step: when the device reported at step `completed`, waits for the decision
   * that answers it (the final active set), so the adapter export sees it.
   */
  async awaitSelection(completed: number, timeoutMs = this.#timeout): Promise<void> {
    if (this.selection.lastReport !== completed) return;
    while (this.selection.selectedAt < completed) {
      const f = await this.#next(`the SELECT after step ${completed}`, timeoutMs, true);
      if (f.type !== "SELECT") {
        throw new DeviceProtocolError(
          `expected the SELECT answering the scores of step ${completed}, got ${f.type}`,
        );
      }
    }
  }

  /** Frees the device-side buffers (the LoRA and ends belong to the caller). */
  free(): void {
    for (const a of this.#inputs.values()) a.free();
    for (const a of this.#scratch.values()) a.free();
    this.#inputs.clear();
    this.#scratch.clear();
    this.#feedback.free();
  }

  // -------------------------------------------------------------------------------------------

  #compute(run: () => void): void {
    const t = performance.now();
    try {
      run();
    } finally {
      this.#computeMs += performance.now() - t;
    }
  }

  #send(frame: Uint8Array): void {
    const send = (f: Uint8Array) => {
      this.stats.sent(f);
      this.#o.transport.send(f);
    };
    if (this.#o.beforeSend) this.#o.beforeSend(frame, send);
    send(frame);
  }

  #sendTensor(
    type: "HIDDEN_H0" | "DELTA_Y" | "GRAD_HL" | "GRAD_X_LORA",
    at: { step: number; micro: number },
    layer: number,
    modules: readonly Proj[],
    tensors: { module?: Proj; data: F32; shape: number[] }[],
  ): void {
    this.#send(encodeTensorFrame(this.#o.k, {
      type,
      session: this.session,
      ...at,
      layer,
      ...(type === "GRAD_X_LORA" ? { modules } : {}),
      tensors,
    }, {
      ...encodeOptionsFor(type, this.#o.codecs, this.#o.crc),
      feedback: this.#feedback,
      limits: this.#limits,
    }));
  }

  /** Tells the coordinator to drop the step, then fails it here. */
  #abort(at: { step: number; micro: number }, why: string): never {
    this.#send(encodeControlFrame({
      type: "ERROR",
      session: this.session,
      ...at,
      code: STREAM_ERROR_CODES["step-aborted"],
      message: `step ${at.step} aborted by the device: ${why}`,
    }));
    throw new Error(`step ${at.step + 1} diverged: ${why}; lower the learning rate`);
  }

  /** The next coordinator frame; ERROR frames are recorded and skipped. */
  async #next(what: string, timeoutMs: number, returnSelect = false): Promise<Frame> {
    // The coordinator computes now: the kernel threads sleep instead of spinning on its cores.
    this.#o.k.park();
    for (;;) {
      const bytes = await this.#o.transport.next(timeoutMs, what);
      this.stats.received(bytes);
      let f: Frame;
      const t = performance.now();
      try {
        f = decodeFrame(this.#o.k, bytes, {
          from: "coordinator",
          limits: this.#limits,
          buffers: this.#decoded,
        });
      } catch (e) {
        if (e instanceof ProtocolError) {
          throw new DeviceProtocolError(`the coordinator sent a malformed frame: ${e.message}`);
        }
        throw e;
      } finally {
        this.#computeMs += performance.now() - t;
      }
      if (f.type === "ERROR") {
        const e = f as ErrorFrame;
        this.errors.push({
          code: e.code,
          name: e.name ?? streamErrorName(e.code),
          message: e.message,
        });
        continue;
      }
      if (f.type === "PING") {
        this.#send(encodeControlFrame({
          type: "PONG",
          session: this.session,
          step: f.step,
          nonce: f.nonce,
          padding: f.padding,
        }));
        continue;
      }
      if (f.type === "PONG" || f.type === "ACK") continue;
      if (f.type === "SELECT") {
        try {
          this.selection.onSelect(f.select);
        } catch (e) {
          throw new DeviceProtocolError((e as Error).message);
        }
        // Rank reallocation: the kept modules grow (s·B·A unchanged) before they train again,
        // and their scores' reference restarts at the grown weights.
        if (f.select.rank !== undefined) {
          const grown = this.#o.lora.growRank(f.select.active, f.select.rank, f.select.step);
          this.selection.rebase(grown);
        }
        if (returnSelect) return f;
        continue;
      }
      return f;
    }
  }

  #check(f: Frame, step: number, inFlight: ReadonlySet<number>): void {
    if (f.step !== step || !inFlight.has(f.micro)) {
      throw new DeviceProtocolError(
        `${f.type} for step ${f.step} micro-batch ${f.micro} arrived during step ${step}, ` +
          `micro-batches [${[...inFlight]}] in flight`,
      );
    }
  }

  /** A wasm buffer of n floats under `key`, reallocated when the size changes. */
  #buffer(map: Map<string, F32>, key: string, shape: number[]): F32 {
    const n = shape.reduce((a, b) => a * b, 1);
    let a = map.get(key);
    if (a === undefined || a.length !== n) {
      a?.free();
      a = this.#o.k.alloc(shape);
      map.set(key, a);
    }
    return a;
  }

  #groupOf(f: TensorFrame): number {
    const g = PROJ_GROUPS.findIndex((group) => f.modules.every((p) => group.includes(p)));
    if (g < 0 || f.modules.length === 0) {
      throw new DeviceProtocolError(`${f.type} names modules [${f.modules}] of no single group`);
    }
    if (f.layer >= this.config.nLayers) {
      throw new DeviceProtocolError(
        `${f.type} is for layer ${f.layer}; the model has ${this.config.nLayers}`,
      );
    }
    for (const p of f.modules) {
      if (!this.#o.lora.targets.includes(p)) {
        throw new DeviceProtocolError(
          `${f.type} asks for module ${moduleKey(f.layer, p)}, but this job's targets are ` +
            this.#o.lora.targets.join(","),
        );
      }
    }
    return g;
  }

  /** GROUP_INPUT → ΔY of each named module → DELTA_Y. */
  #loraForward(f: TensorFrame, M: number, active: Set<string>): void {
    const { lora } = this.#o, layer = f.layer, modules = f.modules;
    const g = this.#groupOf(f);
    const { inDim } = projDims(this.config, modules[0]);
    const x = f.tensors[0];
    if (x.data.length !== M * inDim) {
      throw new DeviceProtocolError(
        `GROUP_INPUT layer ${layer} [${modules}] has ${x.data.length} values, expected ${M}·${inDim}`,
      );
    }
    const X = this.#buffer(this.#inputs, `${f.micro}/${layer}/${g}`, [M, inDim]);
    X.data.set(x.data);
    const outputs = modules.map((proj) => {
      const Y = this.#buffer(this.#scratch, `dy/${proj}`, [M, projDims(this.config, proj).outDim]);
      Y.data.fill(0);
      return { proj, Y };
    });
    const before = lora.flops;
    lora.forward(layer, X, outputs);
    this.flops.loraForward += lora.flops - before;
    for (const p of modules) active.add(moduleKey(layer, p));
    this.#sendTensor(
      "DELTA_Y",
      { step: f.step, micro: f.micro },
      layer,
      modules,
      outputs.map((o) => ({
        module: o.proj,
        data: o.Y,
        shape: [M, projDims(this.config, o.proj).outDim],
      })),
    );
  }

  /**
   * GROUP_GRAD → ∂A, ∂B accumulated, Σ ∂X_lora → GRAD_X_LORA; with the no-∂X flag (nothing
   * upstream is trained) no ∂X_lora is computed or sent.
   */
  #loraBackward(f: TensorFrame, M: number): void {
    const { lora } = this.#o, layer = f.layer, modules = f.modules;
    this.#groupOf(f);
    const { inDim } = projDims(this.config, modules[0]);
    const grads = f.tensors.map((t) => {
      const proj = t.module!;
      const outDim = projDims(this.config, proj).outDim;
      if (t.data.length !== M * outDim) {
        throw new DeviceProtocolError(
          `GROUP_GRAD ${
            moduleKey(layer, proj)
          } has ${t.data.length} values, expected ${M}·${outDim}`,
        );
      }
      const G = this.#buffer(this.#scratch, `g/${proj}`, [M, outDim]);
      G.data.set(t.data);
      return { proj, G };
    });
    const dX = f.noDx ? null : this.#buffer(this.#scratch, `dx/${inDim}`, [M, inDim]);
    dX?.data.fill(0);
    const before = lora.flops;
    lora.backward(layer, grads, dX);
    this.flops.loraBackward += lora.flops - before;
    if (dX === null) return;
    this.#sendTensor("GRAD_X_LORA", { step: f.step, micro: f.micro }, layer, modules, [
      { data: dX, shape: [M, inDim] },
    ]);
  }
}
