/**
 * Where the frozen blocks of a job's base model live and its sessions run (Deno edge: loads model
 * files). A `ModelHost` loads each base model once, shares its uploaded weights across every
 * session of that model (`LlamaBlocks.share`: each session gets its own activations), and runs
 * one `CoordinatorSession` per device connection.
 *
 * - `InThreadHost`: models and sessions on the calling thread (tests, debugging).
 * - `WorkerHost`: one Deno Worker per base model running an InThreadHost (worker.ts), so the
 *   frozen compute never blocks the thread that serves HTTP and shuffles WebSocket frames.
 */
import { Kernels } from "../kernels/mod.ts";
import { LlamaBlocks } from "../runtime/model/blocks.ts";
import type { LlamaWeights } from "../runtime/model/weights.ts";
import { loadWeights, resolveModel, type ResolveOptions } from "../runtime/resolve.ts";
import type { StreamErrorCode } from "../runtime/protocol/stream.ts";
import { CLOSE_CODES } from "../runtime/protocol/stream.ts";
import {
  CoordinatorSession,
  type SessionEvents,
  type SessionModel,
  type SessionSpec,
  type StepReport,
} from "./session.ts";

export interface HostSessionSpec extends SessionSpec {
  /** The job's base model as the CLI takes it (path, known name, synthetic:<preset>). */
  baseModel: string;
}

/** The transport's grip on one session. */
export interface SessionHandle {
  /** One frame from the device (the bytes are read before this returns or transferred). */
  deliver(bytes: Uint8Array): void;
  /** The Kill-and-Revive scheduler's seam: the active modules from the next micro-batch on. */
  setActiveModules(keys: readonly string[]): void;
  /** The device was re-tiered: its module-selection budget changes at the next decision. */
  setTier(tier: string | null, rho: number): void;
  /** Ends the session; with `error`, an ERROR frame goes out first. */
  close(code: number, reason: string, error?: StreamErrorCode): void;
}

export interface ModelHost {
  open(spec: HostSessionSpec, events: SessionEvents): SessionHandle;
  /** Ends every session (ERROR "shutdown") and frees the models. */
  close(): Promise<void>;
}

export interface HostOptions {
  /** Kernel threads for the frozen compute of each model (default 1). */
  threads?: number;
  /** Where base models are found (`$DLORA_HOME`, ./.dlora, ../shared, downloads). */
  resolve?: ResolveOptions;
  /** Loads a base model's weights; default resolves it like the CLI does. */
  loadWeights?: (baseModel: string) => Promise<LlamaWeights>;
}

async function defaultLoad(baseModel: string, resolve: ResolveOptions): Promise<LlamaWeights> {
  return await loadWeights(await resolveModel(baseModel, resolve), resolve);
}

/** Models and sessions on this thread. */
export class InThreadHost implements ModelHost {
  readonly #opts: HostOptions;
  #kernels: Promise<Kernels> | null = null;
  readonly #models = new Map<string, Promise<LlamaBlocks>>();
  readonly #sessions = new Set<CoordinatorSession>();
  #closed = false;

  constructor(opts: HostOptions = {}) {
    this.#opts = opts;
  }

  /** Sessions running now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** The blocks of a base model, loaded on first use (a failed load is retried next time). */
  #blocks(baseModel: string): Promise<LlamaBlocks> {
    let p = this.#models.get(baseModel);
    if (p === undefined) {
      this.#kernels ??= Kernels.load({ threads: this.#opts.threads ?? 1 });
      const kernels = this.#kernels;
      const load = this.#opts.loadWeights ??
        ((m: string) => defaultLoad(m, this.#opts.resolve ?? {}));
      p = (async () => {
        const w = await load(baseModel);
        return new LlamaBlocks(await kernels, w.config, w.layers);
      })();
      this.#models.set(baseModel, p);
      p.catch(() => this.#models.delete(baseModel));
    }
    return p;
  }

  open(spec: HostSessionSpec, events: SessionEvents): SessionHandle {
    if (this.#closed) throw new Error("InThreadHost.open: the host is closed");
    const model: Promise<SessionModel> = this.#blocks(spec.baseModel).then((b) => ({
      k: b.k,
      blocks: b.share(),
    }));
    const { baseModel: _, ...sessionSpec } = spec;
    const session: CoordinatorSession = new CoordinatorSession(model, sessionSpec, {
      ...events,
      end: (code, reason) => {
        this.#sessions.delete(session);
        events.end(code, reason);
      },
    });
    this.#sessions.add(session);
    return {
      deliver: (bytes) => session.deliver(bytes),
      setActiveModules: (keys) => session.setActiveModules(keys),
      setTier: (tier, rho) => session.setTier(tier, rho),
      close: (code, reason, error) => session.close(code, reason, error),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const sessions = [...this.#sessions];
    for (const s of sessions) {
      s.close(CLOSE_CODES.goingAway, "the coordinator is shutting down", "shutdown");
    }
    await Promise.all(sessions.map((s) => s.finished));
    for (const p of this.#models.values()) (await p.catch(() => null))?.free();
    this.#models.clear();
    const k = await this.#kernels?.catch(() => null);
    k?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Worker host: the messages between the main thread and worker.ts.

export type ToWorker =
  | { t: "init"; opts: Omit<HostOptions, "loadWeights"> }
  | { t: "open"; spec: HostSessionSpec }
  | { t: "frame"; session: number; bytes: ArrayBuffer }
  | { t: "active"; session: number; keys: string[] }
  | { t: "tier"; session: number; tier: string | null; rho: number }
  | { t: "close"; session: number; code: number; reason: string; error?: StreamErrorCode }
  | { t: "shutdown" };

export type FromWorker =
  | { t: "send"; session: number; bytes: ArrayBuffer }
  | { t: "step"; report: StepReport }
  | { t: "refused"; session: number; code: number; message: string }
  | { t: "end"; session: number; code: number; reason: string }
  | { t: "log"; session: number; message: string }
  | { t: "shutdown-done" };

/** A frame's bytes as a whole ArrayBuffer that may be transferred (copied when it is a view). */
export function ownBuffer(bytes: Uint8Array): ArrayBuffer {
  const b = bytes.buffer;
  if (b instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === b.byteLength) {
    return b;
  }
  return bytes.slice().buffer as ArrayBuffer;
}

interface WorkerLink {
  worker: Worker;
  sessions: Map<number, SessionEvents>;
  shutdown: Promise<void> | null;
}

/**
 * One Deno Worker per base model, each running an InThreadHost over its own kernels (worker.ts).
 * The main thread only moves frames: bytes are transferred, never copied. A worker that dies
 * ends its sessions (close 1011); the next session of that model starts a fresh one.
 */
export class WorkerHost implements ModelHost {
  readonly #opts: Omit<HostOptions, "loadWeights">;
  readonly #workers = new Map<string, WorkerLink>();
  #closed = false;

  constructor(opts: Omit<HostOptions, "loadWeights"> = {}) {
    this.#opts = opts;
  }

  /** Workers running now (one per base model with sessions since it started). */
  get workerCount(): number {
    return this.#workers.size;
  }

  #link(baseModel: string): WorkerLink {
    let link = this.#workers.get(baseModel);
    if (link !== undefined) return link;
    const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    const l: WorkerLink = { worker, sessions: new Map(), shutdown: null };
    link = l;
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      switch (m.t) {
        case "send":
          l.sessions.get(m.session)?.send(new Uint8Array(m.bytes));
          break;
        case "step":
          l.sessions.get(m.report.session)?.step?.(m.report);
          break;
        case "refused":
          l.sessions.get(m.session)?.refused?.(m.code, m.message);
          break;
        case "end": {
          const events = l.sessions.get(m.session);
          l.sessions.delete(m.session);
          events?.end(m.code, m.reason);
          break;
        }
        case "log":
          l.sessions.get(m.session)?.log?.(m.message);
          break;
        case "shutdown-done":
          break;
      }
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#workers.delete(baseModel);
      const sessions = [...l.sessions.values()];
      l.sessions.clear();
      worker.terminate();
      for (const events of sessions) {
        events.end(CLOSE_CODES.internal, `the model worker failed: ${e.message}`);
      }
    };
    worker.postMessage({ t: "init", opts: this.#opts } satisfies ToWorker);
    this.#workers.set(baseModel, l);
    return l;
  }

  open(spec: HostSessionSpec, events: SessionEvents): SessionHandle {
    if (this.#closed) throw new Error("WorkerHost.open: the host is closed");
    const link = this.#link(spec.baseModel);
    const session = spec.session;
    link.sessions.set(session, events);
    const post = (m: ToWorker, transfer: Transferable[] = []) => {
      if (link.sessions.has(session)) link.worker.postMessage(m, transfer);
    };
    post({ t: "open", spec });
    return {
      deliver: (bytes) => {
        const buffer = ownBuffer(bytes);
        post({ t: "frame", session, bytes: buffer }, [buffer]);
      },
      setActiveModules: (keys) => post({ t: "active", session, keys: [...keys] }),
      setTier: (tier, rho) => post({ t: "tier", session, tier, rho }),
      close: (code, reason, error) => post({ t: "close", session, code, reason, error }),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const links = [...this.#workers.values()];
    this.#workers.clear();
    await Promise.all(links.map((l) => {
      l.shutdown ??= new Promise<void>((resolve) => {
        const done = () => {
          for (const events of l.sessions.values()) {
            events.end(CLOSE_CODES.goingAway, "the coordinator is shutting down");
          }
          l.sessions.clear();
          l.worker.terminate();
          resolve();
        };
        const timer = setTimeout(done, 5_000);
        l.worker.addEventListener("message", (e: MessageEvent<FromWorker>) => {
          if (e.data.t === "shutdown-done") {
            clearTimeout(timer);
            done();
          }
        });
        l.worker.postMessage({ t: "shutdown" } satisfies ToWorker);
      });
      return l.shutdown;
    }));
  }
}
