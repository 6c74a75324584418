/**
 * One device's step stream on the coordinator (DLORA.md §2): the frozen transformer blocks run
 * here, and at every active LoRA group they call the device through `RemoteLoraHooks`, which sends
 * the group's input X (GROUP_INPUT) and adds the device's ΔY (DELTA_Y) into Y, and on the way back
 * sends G (GROUP_GRAD) and adds the device's ∂X_lora (GRAD_X_LORA) into ∂X.
 *
 * Platform-free: frames come in through `deliver` and go out through `events.send`; executor.ts
 * puts a session on a WebSocket, host.ts/worker.ts run it beside the model's kernels.
 *
 * One step, micro-batch m (device → ↑, coordinator → ↓):
 *   ↑ HIDDEN_H0 → blocks forward: per active group ↓ GROUP_INPUT, ↑ DELTA_Y → ↓ HIDDEN_HL →
 *   ↑ GRAD_HL → blocks backward: per active group ↓ GROUP_GRAD, ↑ GRAD_X_LORA (none for the
 *   first active group in forward order: nothing upstream is trained) → ↓ STEP_END(m);
 *   after its optimizer step the device sends ↑ STEP_END (the step is counted then).
 * Micro-batches may overlap (DLORA.md §2, pipelining): a device may send the next micro-batch's
 * HIDDEN_H0 before the last one's STEP_END(m). Each micro-batch in flight (at most
 * MAX_MICROS_IN_FLIGHT) runs its own pass over its own activations (`LlamaBlocks.share`), and
 * each device frame goes to the pass of its `micro`; while one pass awaits the device, another
 * computes.
 *
 * Refusals: a frame that does not decode, or decodes but is not what the step expects now, is
 * answered with an ERROR frame and dropped; nothing else changes and the session keeps waiting
 * for the right frame. `maxRefused` refusals in a row end the session (close 1008). An ERROR
 * frame from the device during a step aborts that step on both sides (the device starts over
 * with a new HIDDEN_H0). Fatal conditions (model not loadable, timeout, cancellation,
 * incompatible HELLO, internal failure) send an ERROR frame and end the session.
 */
import type { F32, Kernels } from "../kernels/mod.ts";
import type { LlamaBlocks } from "../runtime/model/blocks.ts";
import type { LoraHooks, ProjGrad, ProjOutput } from "../runtime/model/hooks.ts";
import { moduleKey, type Proj, projDims } from "../runtime/model/modules.ts";
import type { LlamaConfig } from "../runtime/model/weights.ts";
import {
  type Codec,
  CODECS,
  DecodeBuffers,
  decodeFrame,
  encodeControlFrame,
  encodeTensorFrame,
  type Frame,
  type FrameRef,
  type Limits,
  PROTOCOL_VERSION,
  ProtocolError,
  resolveLimits,
  type TensorFrame,
  type TensorMessageType,
  TopkFeedback,
} from "../runtime/protocol/mod.ts";
import { Mailbox, MailboxTimeout } from "../runtime/protocol/mailbox.ts";
import type { SelectMessage } from "../runtime/protocol/control.ts";
import { SelectionDriver, type SelectionOutcome, type SelectionSpec } from "./scheduler/driver.ts";
import {
  CLOSE_CODES,
  codecFor,
  encodeOptionsFor,
  STREAM_ERROR_CODES,
  type StreamCodecs,
  type StreamErrorCode,
} from "../runtime/protocol/stream.ts";

export interface SessionSpec {
  /** Session id on the wire (u32, unique among this coordinator's sessions). */
  session: number;
  jobId: string;
  deviceId: string;
  /** The job's LoRA targets: modules exist for these projections in every layer. */
  targets: readonly Proj[];
  /** What the coordinator sends in; devices may answer in any codec the frame format allows. */
  codecs: StreamCodecs;
  /** Largest h0 a device may send: the job's batch and seq_len. */
  maxBatch: number;
  maxSeqLen: number;
  /** Keys ("3.q") of the modules active at start; default every module of the targets. */
  activeModules?: readonly string[];
  /** Longest wait for a device frame inside a step (default 120 s). */
  frameTimeoutMs?: number;
  /** Longest wait for the HELLO and between steps (default 10 min). */
  idleTimeoutMs?: number;
  /** Refused frames in a row before the session ends (default 16). */
  maxRefused?: number;
  limits?: Partial<Limits>;
  /** CRC-32 on the tensor frames sent (default TENSOR_CRC_DEFAULT: off, see stream.ts). */
  crc?: boolean;
  /** Kill and Revive (scheduler/driver.ts): absent, every module stays active and no SELECT goes out. */
  selection?: SelectionSpec;
}

/** A step the device finished (its STEP_END arrived). */
export interface StepReport {
  session: number;
  step: number;
  /** Micro-batches the step ran. */
  micros: number;
  /** Input tokens (Σ B·T over the micro-batches). */
  tokens: number;
  /** From the step's first HIDDEN_H0 to the device's STEP_END. */
  seconds: number;
  /** Of which the frozen blocks computed here (time awaiting the device excluded). */
  computeSeconds: number;
  /** The module-selection decision taken at this step's end, when it was an event. */
  selection?: SelectionOutcome;
}

export interface SessionEvents {
  send(frame: Uint8Array): void;
  step?(report: StepReport): void;
  /** A frame was refused with an ERROR frame (code, message). */
  refused?(code: number, message: string): void;
  /** Something the operator should know that is not a refused frame. */
  log?(message: string): void;
  /** The session is over (called once): close the transport with `code`. */
  end(code: number, reason: string): void;
}

/** What the session runs on: the kernels of the model and blocks of its own. */
export interface SessionModel {
  k: Kernels;
  blocks: LlamaBlocks;
}

const DEFAULT_FRAME_TIMEOUT_MS = 120_000;
const DEFAULT_IDLE_TIMEOUT_MS = 600_000;
const DEFAULT_MAX_REFUSED = 16;
/** Micro-batches of one step a device may have in flight at once (each has its own activations). */
export const MAX_MICROS_IN_FLIGHT = 4;

/** Unwinds the session (and any pass awaiting a hook) once it has ended. */
class SessionEnded extends Error {
  constructor(readonly code: number, reason: string) {
    super(reason);
    this.name = "SessionEnded";
  }
}

/** The device aborted the step in progress. */
class StepAborted extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StepAborted";
  }
}

/** Thrown to end the session with an ERROR frame first. */
class Fatal extends Error {
  constructor(
    readonly errorCode: StreamErrorCode,
    readonly closeCode: number,
    message: string,
  ) {
    super(message);
    this.name = "Fatal";
  }
}

type Accept = (f: Frame) => string | null;

/** The micro-batch pass awaiting a frame, and the abort generation it started in. */
interface PassRef {
  micro: number;
  gen: number;
}

/** One wait in `#expect`: frames go to the pass of their micro-batch, or to the step stream. */
interface Waiter {
  what: string;
  accept: Accept;
  pass: PassRef | null;
  settle(f: Frame | null, e?: unknown): void;
}

export class CoordinatorSession {
  spec: Readonly<SessionSpec>;
  readonly #events: SessionEvents;
  readonly #inbox = new Mailbox<Uint8Array>();
  readonly #limits: Limits;
  readonly #frameTimeout: number;
  readonly #idleTimeout: number;
  readonly #maxRefused: number;
  #model: SessionModel | null = null;
  #active: Set<string> | null;
  #pendingActive: Set<string> | null = null;
  #refusedInRow = 0;
  #ended = false;
  #helloDone = false;
  #deviceMaxFrame = Infinity;
  #driver: SelectionDriver | null = null;
  /** Waits for device frames, served in arrival order by one reader (`#pump`). */
  readonly #waiters = new Set<Waiter>();
  #pumping = false;
  /** Micro-batch passes running; while any does, a device ERROR aborts the step. */
  #passes = 0;
  /** Bumped by each aborted step: passes of an older generation are unwound. */
  #aborts = 0;
  /** Set once a pass failed for good: every wait rejects with it. */
  #failure: { error: unknown } | null = null;
  /** Decoded values are reused: each frame's are consumed when its wait resumes, before the next read. */
  readonly #decoded = new DecodeBuffers();
  readonly #finished: Promise<void>;

  constructor(model: Promise<SessionModel>, spec: SessionSpec, events: SessionEvents) {
    this.spec = { ...spec };
    this.#events = events;
    this.#limits = resolveLimits(spec.limits);
    this.#frameTimeout = spec.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
    this.#idleTimeout = spec.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#maxRefused = spec.maxRefused ?? DEFAULT_MAX_REFUSED;
    this.#active = spec.activeModules ? new Set(spec.activeModules) : null;
    this.#finished = this.#run(model);
  }

  /** Resolves once the session has ended and released its buffers. */
  get finished(): Promise<void> {
    return this.#finished;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The active modules' keys now (the job's targets in every layer until the scheduler says). */
  get activeModules(): string[] {
    return this.#active ? [...this.#active] : [];
  }

  /** One frame from the device (bytes are only read; decoding happens in order, in #run). */
  deliver(bytes: Uint8Array): void {
    if (!this.#ended) this.#inbox.push(bytes);
  }

  /**
   * Sets the active modules (the Kill-and-Revive scheduler's seam). Takes effect at the next
   * micro-batch's forward, never inside a pass. Unknown keys are an error.
   */
  setActiveModules(keys: Iterable<string>): void {
    const next = new Set(keys);
    const model = this.#model;
    if (model !== null) {
      const all = new Set(allModuleKeys(model.blocks.config, this.spec.targets));
      for (const key of next) {
        if (!all.has(key)) {
          throw new Error(
            `setActiveModules: no module "${key}" in job ${this.spec.jobId} (targets ` +
              `${this.spec.targets.join(",")}, ${model.blocks.config.nLayers} layers)`,
          );
        }
      }
    }
    this.#pendingActive = next;
  }

  /** The module-selection driver (null when the job runs none). */
  get selection(): SelectionDriver | null {
    return this.#driver;
  }

  /** The device was re-tiered: its new budget applies at the next decision. */
  setTier(tier: string | null, rho: number): void {
    if (this.#driver) this.#driver.setTier(tier, rho);
    else if (this.spec.selection) {
      this.spec = { ...this.spec, selection: { ...this.spec.selection, tier, tierRho: rho } };
    }
  }

  /**
   * Ends the session from outside. With `error` (the job was cancelled, the coordinator stops)
   * an ERROR frame goes out and the session ends now. Without (the device closed the
   * connection) the frames that arrived before the close are still handled, so a last STEP_END
   * is counted; the session then ends.
   */
  close(code: number, reason: string, error?: StreamErrorCode): void {
    if (this.#ended) return;
    if (error === undefined) {
      this.#inbox.close(new SessionEnded(code, reason), { drain: true });
      return;
    }
    this.#sendError(STREAM_ERROR_CODES[error], reason);
    this.#end(code, reason);
  }

  // -------------------------------------------------------------------------------------------

  #end(code: number, reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#inbox.close(new SessionEnded(code, reason));
    this.#events.end(code, reason);
  }

  #send(frame: Uint8Array): void {
    if (!this.#ended) this.#events.send(frame);
  }

  #sendError(code: number, message: string, ref?: FrameRef): void {
    this.#send(encodeControlFrame({
      type: "ERROR",
      session: this.spec.session,
      step: ref?.step ?? 0,
      layer: ref?.layer ?? 0,
      micro: ref?.micro ?? 0,
      code,
      message,
    }));
  }

  /** Answers a frame with ERROR and drops it; too many in a row end the session. */
  #refuse(code: number, message: string, ref?: FrameRef): void {
    this.#sendError(code, message, ref);
    this.#events.refused?.(code, message);
    if (++this.#refusedInRow >= this.#maxRefused) {
      const reason = `${this.#refusedInRow} refused frames in a row; last: ${message}`;
      this.#sendError(STREAM_ERROR_CODES["too-many-errors"], reason);
      this.#end(CLOSE_CODES.policy, reason);
    }
  }

  /**
   * The next decoded frame. Refuses undecodable ones; answers PING at once; ignores PONG/ACK;
   * an ERROR from the device aborts the step in progress (while `inStep()`) or is only noted.
   */
  async #take(what: string, timeoutMs: number, inStep: () => boolean): Promise<Frame> {
    const k = this.#model!.k;
    for (;;) {
      const bytes = await this.#inbox.next(timeoutMs, what);
      let f: Frame;
      try {
        f = decodeFrame(k, bytes, {
          from: "device",
          limits: this.#limits,
          buffers: this.#decoded,
        });
      } catch (e) {
        if (e instanceof ProtocolError) this.#refuse(e.wireCode, e.message, e.frame);
        else this.#refuse(STREAM_ERROR_CODES.internal, `frame could not be read: ${e}`);
        continue;
      }
      if (this.#helloDone && f.session !== this.spec.session) {
        this.#refuse(
          STREAM_ERROR_CODES["unexpected-frame"],
          `${f.type} names session ${f.session}; this connection is session ${this.spec.session}`,
          f,
        );
        continue;
      }
      switch (f.type) {
        case "PING":
          this.#send(encodeControlFrame({
            type: "PONG",
            session: this.spec.session,
            step: f.step,
            nonce: f.nonce,
            padding: f.padding,
          }));
          continue;
        case "PONG":
        case "ACK":
          continue;
        case "ERROR":
          if (inStep()) {
            throw new StepAborted(`device error ${f.name ?? f.code}: ${f.message}`);
          }
          continue;
      }
      return f;
    }
  }

  /**
   * The next frame `accept` takes (it returns null, or why not); others are refused. With `pass`
   * the wait belongs to that micro-batch's pass: only frames of its micro come to it, and a
   * device ERROR aborts it (StepAborted); without, it is the step stream's (HIDDEN_H0, STEP_END).
   */
  #expect(what: string, accept: Accept, timeoutMs: number, pass: PassRef | null): Promise<Frame> {
    if (this.#failure !== null) return Promise.reject(this.#failure.error);
    if (pass !== null && pass.gen !== this.#aborts) {
      return Promise.reject(new StepAborted("the step was aborted"));
    }
    return new Promise<Frame>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => this.#inbox.close(new MailboxTimeout(what, timeoutMs)), timeoutMs)
        : undefined;
      const w: Waiter = {
        what,
        accept,
        pass,
        settle: (f, e) => {
          clearTimeout(timer);
          this.#waiters.delete(w);
          if (f !== null) resolve(f);
          else reject(e);
        },
      };
      this.#waiters.add(w);
      this.#pump();
    });
  }

  /** Rejects every wait, now and later, with `error` (the session is going down). */
  #failAll(error: unknown): void {
    this.#failure ??= { error };
    for (const w of [...this.#waiters]) w.settle(null, this.#failure.error);
  }

  /**
   * Reads device frames while anyone waits and hands each to the wait it belongs to. A frame
   * that only answers a frame sent here can never come before its wait: a pass sends and
   * registers its next wait in one synchronous run, and a settled wait resumes (and registers
   * the next) in a microtask queued ahead of this loop's next read.
   */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#waiters.size > 0) {
        // Every pass waits for the device now: this model's kernel threads sleep instead of
        // spinning on its cores.
        this.#model?.k.park();
        const what = [...this.#waiters].map((w) => w.what).join(" or ");
        let f: Frame;
        try {
          f = await this.#take(what, Infinity, () => this.#passes > 0);
        } catch (e) {
          if (e instanceof StepAborted) {
            this.#aborts++;
            for (const w of [...this.#waiters]) if (w.pass !== null) w.settle(null, e);
            continue;
          }
          this.#failAll(e);
          return;
        }
        const stream = f.type === "HIDDEN_H0" || f.type === "STEP_END";
        const candidates = [...this.#waiters].filter((w) => (w.pass === null) === stream);
        const w = candidates.find((w) => w.pass === null || w.pass.micro === f.micro) ??
          candidates[0] ?? [...this.#waiters][0];
        const problem = w === undefined
          ? `unexpected ${f.type} (micro-batch ${f.micro})`
          : w.accept(f);
        if (problem === null) {
          this.#refusedInRow = 0;
          w!.settle(f);
        } else this.#refuse(STREAM_ERROR_CODES["unexpected-frame"], problem, f);
      }
    } finally {
      this.#pumping = false;
    }
  }

  async #run(modelPromise: Promise<SessionModel>): Promise<void> {
    try {
      try {
        this.#model = await modelPromise;
      } catch (e) {
        throw new Fatal(
          "model-unavailable",
          CLOSE_CODES.modelUnavailable,
          `the coordinator cannot load this job's base model: ${(e as Error).message}`,
        );
      }
      if (this.#ended) return;
      const { blocks } = this.#model;
      this.#active ??= new Set(allModuleKeys(blocks.config, this.spec.targets));
      if (this.#pendingActive !== null) this.setActiveModules(this.#pendingActive);
      if (this.spec.selection) {
        const keys = allModuleKeys(blocks.config, this.spec.targets);
        this.#driver = new SelectionDriver(
          this.spec.selection,
          keys,
          this.spec.deviceId,
          moduleCosts(blocks.config, keys),
        );
      }
      await this.#hello();
      if (this.#driver) this.#select(this.#driver.start(), 0);
      await this.#steps();
    } catch (e) {
      if (e instanceof SessionEnded) {
        this.#end(e.code, e.message);
        return;
      }
      if (e instanceof Fatal) {
        this.close(e.closeCode, e.message, e.errorCode);
      } else if (e instanceof MailboxTimeout) {
        this.close(CLOSE_CODES.timeout, e.message, "timeout");
      } else {
        this.close(
          CLOSE_CODES.internal,
          `coordinator failure: ${(e as Error).message}`,
          "internal",
        );
      }
    } finally {
      this.#model?.blocks.free();
      if (!this.#ended) this.#end(CLOSE_CODES.normal, "session finished");
    }
  }

  async #hello(): Promise<void> {
    const f = await this.#expect(
      "HELLO",
      (f) => f.type === "HELLO" ? null : `expected HELLO to open the session, got ${f.type}`,
      this.#idleTimeout,
      null,
    );
    if (f.type !== "HELLO") throw new Error("unreachable");
    const h = f.hello;
    if (h.role !== "device") {
      throw new Fatal(
        "incompatible",
        CLOSE_CODES.incompatible,
        `HELLO says role ${h.role}; only devices open sessions`,
      );
    }
    const needed = new Set<Codec>(
      (["GROUP_INPUT", "HIDDEN_HL", "GROUP_GRAD"] as TensorMessageType[]).map((t) =>
        codecFor(t, this.spec.codecs)
      ),
    );
    const missing = [...needed].filter((c) => !h.codecs.includes(c));
    if (missing.length > 0) {
      throw new Fatal(
        "incompatible",
        CLOSE_CODES.incompatible,
        `this job sends ${[...needed].join(", ")}, but the device accepts only ` +
          `${h.codecs.join(", ")} (missing ${missing.join(", ")})`,
      );
    }
    this.#deviceMaxFrame = h.maxFrameBytes;
    this.#helloDone = true;
    this.#refusedInRow = 0;
    this.#send(encodeControlFrame({
      type: "HELLO",
      session: this.spec.session,
      step: 0,
      hello: {
        role: "coordinator",
        minVersion: PROTOCOL_VERSION,
        maxVersion: PROTOCOL_VERSION,
        codecs: Object.keys(CODECS) as Codec[],
        maxFrameBytes: this.#limits.maxFrameBytes,
      },
    }));
  }

  /** Applies a decision's trained set from the next micro-batch on and tells the device. */
  #select(m: SelectMessage, step: number): void {
    this.setActiveModules([...m.active, ...m.probing]);
    this.#send(encodeControlFrame({ type: "SELECT", session: this.spec.session, step, select: m }));
  }

  async #steps(): Promise<void> {
    const { k, blocks } = this.#model!;
    const c = blocks.config, D = c.dim, session = this.spec.session;
    const sendLimits = {
      ...this.#limits,
      maxFrameBytes: Math.min(this.#limits.maxFrameBytes, this.#deviceMaxFrame),
    };
    const feedback = new TopkFeedback(k);
    /** What one micro-batch in flight runs on: its blocks, hooks and the active set it saw. */
    interface Slot {
      blocks: LlamaBlocks;
      hooks: RemoteLoraHooks;
      pass: PassRef;
      active: Set<string>;
    }
    const slots: Slot[] = [];
    const newSlot = (): Slot => {
      const slot: Slot = {
        blocks: slots.length === 0 ? blocks : blocks.share(),
        pass: { micro: 0, gen: 0 },
        active: this.#active!,
        hooks: new RemoteLoraHooks(k, c, {
          session,
          codecs: this.spec.codecs,
          feedback,
          limits: sendLimits,
          crc: this.spec.crc,
          send: (frame) => this.#send(frame),
          expect: (what, accept) => this.#expect(what, accept, this.#frameTimeout, slot.pass),
          isActive: (key) => slot.active.has(key),
        }),
      };
      slots.push(slot);
      return slot;
    };
    const idle: Slot[] = [];
    /** The passes in flight by micro-batch. */
    const running = new Map<number, Promise<void>>();
    let step: { n: number; micros: number; tokens: number; t0: number; compute: number } | null =
      null;

    /** One micro-batch: blocks forward, ↓ HIDDEN_HL, ↑ GRAD_HL, blocks backward, ↓ STEP_END(m). */
    const runMicro = async (f: TensorFrame, slot: Slot, s: NonNullable<typeof step>) => {
      const h0 = f.tensors[0];
      const [B, T] = h0.shape;
      const at = { step: f.step, micro: f.micro };
      const { hooks, blocks } = slot;
      hooks.at(at.step, at.micro);
      try {
        const t0 = performance.now();
        const hL = await blocks.forward(h0.data, { B, T }, hooks);
        this.#send(encodeTensorFrame(k, {
          type: "HIDDEN_HL",
          session,
          ...at,
          tensors: [{ data: hL, shape: [B, T, D] }],
        }, {
          ...encodeOptionsFor("HIDDEN_HL", this.spec.codecs, this.spec.crc),
          limits: sendLimits,
        }));
        const t1 = performance.now();
        const g = await this.#expect(
          "GRAD_HL",
          (g) => {
            const problem = tensorReply(g, "GRAD_HL", at, 0, [], [[B * T * D, D]]);
            return problem;
          },
          this.#frameTimeout,
          slot.pass,
        ) as TensorFrame;
        const t2 = performance.now();
        // ∂L/∂h0 goes nowhere (the device's embedding is frozen): stop at the first module.
        await blocks.backward(g.tensors[0].data, hooks, { inputGrad: false });
        const t3 = performance.now();
        s.compute += ((t1 - t0) + (t3 - t2)) / 1000 - hooks.takeWaitSeconds();
        s.micros++;
        s.tokens += B * T;
        this.#send(encodeControlFrame({ type: "STEP_END", session, ...at }));
      } catch (e) {
        if (!(e instanceof StepAborted)) throw e;
        hooks.takeWaitSeconds();
        if (step === s) step = null;
      }
    };

    try {
      for (;;) {
        const f = await this.#expect(
          "HIDDEN_H0 or STEP_END",
          (f) => {
            if (f.type === "SCORES") {
              if (this.#driver === null) return "SCORES, but this job runs no module selection";
              if (step === null || f.step !== step.n) {
                return `SCORES for step ${f.step}, but no micro-batch of that step ran`;
              }
              return this.#driver.checkScores(f.scores);
            }
            if (f.type === "STEP_END") {
              if (step === null || f.step !== step.n) {
                return `STEP_END for step ${f.step}, but no micro-batch of that step ran`;
              }
              return running.size > 0
                ? `STEP_END for step ${f.step} while micro-batches [${[...running.keys()]}] ` +
                  "still run"
                : null;
            }
            if (f.type !== "HIDDEN_H0") return `expected HIDDEN_H0 to start a step, got ${f.type}`;
            const shape = f.tensors[0].shape;
            const [B, T, d] = shape;
            if (shape.length !== 3 || d !== D) {
              return `HIDDEN_H0 has shape [${shape}], expected [B, T, ${D}]`;
            }
            if (B > this.spec.maxBatch || T > this.spec.maxSeqLen) {
              return `HIDDEN_H0 of ${B}×${T} exceeds this job's batch ${this.spec.maxBatch} × ` +
                `seq_len ${this.spec.maxSeqLen}`;
            }
            if (running.has(f.micro)) {
              return `HIDDEN_H0 for micro-batch ${f.micro} of step ${f.step}, which still runs`;
            }
            if (running.size > 0 && step !== null && f.step !== step.n) {
              return `HIDDEN_H0 for step ${f.step} while micro-batches of step ${step.n} still run`;
            }
            if (running.size >= MAX_MICROS_IN_FLIGHT) {
              return `HIDDEN_H0 for micro-batch ${f.micro} with ${running.size} micro-batches in ` +
                `flight already (at most ${MAX_MICROS_IN_FLIGHT})`;
            }
            return null;
          },
          this.#idleTimeout,
          null,
        ) as TensorFrame | Frame;

        if (f.type === "SCORES") {
          this.#driver!.takeScores(f.scores);
          continue;
        }
        if (f.type === "STEP_END") {
          const s = step!;
          const decided = this.#driver?.stepEnded(s.n + 1) ?? null;
          if (decided) this.#select(decided.select, s.n + 1);
          this.#events.step?.({
            session,
            step: s.n,
            micros: s.micros,
            tokens: s.tokens,
            seconds: (performance.now() - s.t0) / 1000,
            computeSeconds: s.compute,
            ...(decided ? { selection: decided.outcome } : {}),
          });
          step = null;
          continue;
        }
        if (step === null || step.n !== f.step) {
          step = { n: f.step, micros: 0, tokens: 0, t0: performance.now(), compute: 0 };
        }
        if (this.#pendingActive !== null) {
          this.#active = this.#pendingActive;
          this.#pendingActive = null;
        }
        const slot = idle.pop() ?? newSlot();
        slot.pass = { micro: f.micro, gen: this.#aborts };
        slot.active = this.#active!;
        const micro = f.micro;
        this.#passes++;
        running.set(
          micro,
          runMicro(f as TensorFrame, slot, step)
            .catch((e) => this.#failAll(e))
            .finally(() => {
              this.#passes--;
              running.delete(micro);
              idle.push(slot);
            }),
        );
      }
    } catch (e) {
      this.#failAll(e);
      throw e;
    } finally {
      await Promise.allSettled(running.values());
      for (const slot of slots) if (slot.blocks !== blocks) slot.blocks.free();
      feedback.free();
    }
  }
}

/** Every module key of `targets` over the model's layers, in module order. */
export function allModuleKeys(c: LlamaConfig, targets: readonly Proj[]): string[] {
  const keys: string[] = [];
  for (let l = 0; l < c.nLayers; l++) for (const p of targets) keys.push(moduleKey(l, p));
  return keys;
}

/**
 * Each module's relative cost, in + out of its projection: with the job's one rank r, a module's
 * LoRA FLOPs, bytes on the wire and parameters per token are all r·(in + out) times a constant.
 */
export function moduleCosts(c: LlamaConfig, keys: readonly string[]): Map<string, number> {
  return new Map(keys.map((key) => {
    const { inDim, outDim } = projDims(c, key.split(".")[1] as Proj);
    return [key, inDim + outDim];
  }));
}

/**
 * Why `f` is not the expected reply (null when it is): type, step, micro, layer, modules and,
 * per tensor, [element count, last dimension].
 */
function tensorReply(
  f: Frame,
  type: TensorMessageType,
  at: { step: number; micro: number },
  layer: number,
  modules: readonly Proj[],
  sizes: readonly (readonly [number, number])[],
): string | null {
  if (f.type !== type) return `expected ${type} (step ${at.step}, layer ${layer}), got ${f.type}`;
  if (f.step !== at.step || f.micro !== at.micro || f.layer !== layer) {
    return `${type} is for step ${f.step} micro ${f.micro} layer ${f.layer}; expected step ` +
      `${at.step} micro ${at.micro} layer ${layer}`;
  }
  if (f.modules.join(",") !== modules.join(",")) {
    return `${type} names modules [${f.modules}], expected [${modules}]`;
  }
  const tensors = (f as TensorFrame).tensors;
  for (let i = 0; i < sizes.length; i++) {
    const t = tensors[i], [n, cols] = sizes[i];
    if (t.data.length !== n || t.shape[t.shape.length - 1] !== cols) {
      return `${type} tensor ${i}${t.module ? ` (${t.module})` : ""} has shape [${t.shape}], ` +
        `expected ${n / cols}×${cols} values`;
    }
  }
  return null;
}

/** How RemoteLoraHooks reaches the device. */
export interface HookLink {
  session: number;
  codecs: StreamCodecs;
  feedback: TopkFeedback;
  limits: Limits;
  /** CRC-32 on the frames sent. */
  crc?: boolean;
  send(frame: Uint8Array): void;
  /** The next frame `accept` takes (others are refused and dropped). */
  expect(what: string, accept: Accept): Promise<Frame>;
  /** Whether module "layer.proj" is active. */
  isActive(key: string): boolean;
}

/**
 * LoRA hooks served by the device over the step stream: the coordinator's side of the U's
 * projections. Forward: X out, ΔY back, added into Y. Backward: G out, Σ ∂X_lora back, added
 * into ∂X. The device keeps X, X·Aᵀ, the gradients and the optimizer.
 */
export class RemoteLoraHooks implements LoraHooks {
  #step = 0;
  #micro = 0;
  #wait = 0;

  constructor(
    readonly k: Kernels,
    readonly config: LlamaConfig,
    readonly link: HookLink,
  ) {}

  /** The step and micro-batch the next frames belong to. */
  at(step: number, micro: number): void {
    this.#step = step;
    this.#micro = micro;
  }

  /** Seconds spent awaiting the device since the last call. */
  takeWaitSeconds(): number {
    const w = this.#wait;
    this.#wait = 0;
    return w;
  }

  isActive(layer: number, proj: Proj): boolean {
    return this.link.isActive(moduleKey(layer, proj));
  }

  async forward(layer: number, X: F32, outputs: readonly ProjOutput[]): Promise<void> {
    const modules = outputs.map((o) => o.proj);
    const { inDim } = projDims(this.config, modules[0]);
    const M = X.length / inDim;
    const at = { step: this.#step, micro: this.#micro };
    this.link.send(encodeTensorFrame(this.k, {
      type: "GROUP_INPUT",
      session: this.link.session,
      ...at,
      layer,
      modules,
      tensors: [{ data: X, shape: [M, inDim] }],
    }, {
      ...encodeOptionsFor("GROUP_INPUT", this.link.codecs, this.link.crc),
      limits: this.link.limits,
    }));
    const sizes = modules.map((p) => {
      const { outDim } = projDims(this.config, p);
      return [M * outDim, outDim] as const;
    });
    const t = performance.now();
    const f = await this.link.expect(
      "DELTA_Y",
      (f) => tensorReply(f, "DELTA_Y", at, layer, modules, sizes),
    ) as TensorFrame;
    this.#wait += (performance.now() - t) / 1000;
    for (const o of outputs) {
      const dy = f.tensors.find((t) => t.module === o.proj)!.data, y = o.Y.data;
      for (let i = 0; i < dy.length; i++) y[i] += dy[i];
    }
  }

  /**
   * ↓ GROUP_GRAD, then ↑ GRAD_X_LORA added into dX. With dX null (nothing upstream is trained)
   * the frame carries the no-∂X flag and nothing comes back: no round trip.
   */
  async backward(layer: number, grads: readonly ProjGrad[], dX: F32 | null): Promise<void> {
    const modules = grads.map((g) => g.proj);
    const { inDim } = projDims(this.config, modules[0]);
    const M = grads[0].G.length / projDims(this.config, modules[0]).outDim;
    const at = { step: this.#step, micro: this.#micro };
    this.link.send(encodeTensorFrame(this.k, {
      type: "GROUP_GRAD",
      session: this.link.session,
      ...at,
      noDx: dX === null,
      layer,
      tensors: grads.map((g) => ({
        module: g.proj,
        data: g.G,
        shape: [M, projDims(this.config, g.proj).outDim],
      })),
    }, {
      ...encodeOptionsFor("GROUP_GRAD", this.link.codecs, this.link.crc),
      feedback: this.link.feedback,
      limits: this.link.limits,
    }));
    if (dX === null) return;
    const t = performance.now();
    const f = await this.link.expect(
      "GRAD_X_LORA",
      (f) => tensorReply(f, "GRAD_X_LORA", at, layer, modules, [[M * inDim, inDim]]),
    ) as TensorFrame;
    this.#wait += (performance.now() - t) / 1000;
    const dx = f.tensors[0].data, d = dX.data;
    for (let i = 0; i < dx.length; i++) d[i] += dx[i];
  }
}
