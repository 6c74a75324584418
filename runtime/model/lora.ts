/**
 * LocalLora: every LoRA module (A r×in, B out×r, scale s = alpha/r) of a model in wasm memory,
 * serving the blocks' hooks in the same process, with its gradients, AdamW moments and active
 * set. A device holds exactly this state and answers the same calls over the network.
 *
 * Initialisation as PEFT: A ~ kaiming_uniform(a=√5) on an (r, in) weight, i.e. U(−1/√in, 1/√in),
 * and B = 0, drawn from a seeded PRNG in module order (layer, then q k v o gate up down).
 *
 * Dropout (optional, as PEFT's `lora_dropout`): in training mode each module's input is
 * X ⊙ mask/(1−p) with its own Bernoulli(1−p) mask, drawn per forward call from one seeded
 * stream (`dropoutSeed`) in call order; the frozen path always sees the undropped X. The mask is
 * kept for the backward (dX gets the same mask). Off in eval mode (`training = false`).
 */
import {
  type AdamWConfig,
  adamwStep,
  clipGradNorm,
  type F32,
  type Kernels,
  loraBackward,
  loraBackwardFlops,
  loraForward,
  loraForwardFlops,
  sumSquares,
  WasmArray,
} from "../../kernels/mod.ts";
import type { Freeable } from "./buffers.ts";
import type { LoraHooks, ProjGrad, ProjOutput } from "./hooks.ts";
import { moduleKey, type Proj, projDims, PROJS } from "./modules.ts";
import type { StepProfile } from "./profile.ts";
import type { LlamaConfig } from "./weights.ts";

export interface LoraOptions {
  /** r */
  rank: number;
  /** Scale s = alpha / r. */
  alpha: number;
  /** Projections that get a module in every layer (default all seven). */
  targets?: readonly Proj[];
  /** Seed of A's initialisation (default 0). */
  seed?: number;
  /** Probability of dropping an input feature of a module (default 0). */
  dropout?: number;
  /** Seed of the dropout masks (default 0). */
  dropoutSeed?: number;
  profile?: StepProfile;
}

/** AdamW hyper-parameters; the step count is kept per module. */
export type LoraOptimizerConfig = Omit<AdamWConfig, "step">;

/** A/B of one module, outside wasm memory (export/import, adapters, the wire). */
export interface LoraWeights {
  A: Float32Array; // (r,in)
  B: Float32Array; // (out,r)
}

interface Module {
  /** Position in module order (its slice of the XA buffer). */
  readonly index: number;
  readonly layer: number;
  readonly proj: Proj;
  readonly key: string;
  readonly inDim: number;
  readonly outDim: number;
  /** Its rank: the LoRA's rank, or more once grown (LocalLora.growRank). */
  rank: number;
  /** [A | B] as one tensor (the optimizer's view), and A, B inside it. */
  params: F32;
  A: F32;
  B: F32;
  grad: F32;
  dA: F32;
  dB: F32;
  m: F32;
  v: F32;
  /** Once grown: its own allocations of params, grad, m, v (else slices of the shared ones). */
  own: F32[] | null;
  /** AdamW steps taken (1-based bias correction), only advanced while active. */
  step: number;
  active: boolean;
  /** Input of the last forward (X, or its dropped copy), consumed by the backward. */
  X: F32 | null;
  /** X·Aᵀ (M,r) of the last forward. */
  XA: F32 | null;
  M: number;
  /** Dropout state: mask (M·in, 1 = kept) and the dropped input (M,in). */
  mask: Uint8Array | null;
  Xd: F32 | null;
}

/** The forward state of a pass that is not the current one (LocalLora.usePass). */
interface PassState {
  xa: F32 | null;
  xaRows: number;
  xaRank: number;
  modules: Pick<Module, "X" | "XA" | "M" | "mask" | "Xd">[];
}

export class LocalLora implements LoraHooks, Freeable {
  readonly rank: number;
  readonly alpha: number;
  readonly scale: number;
  readonly targets: readonly Proj[];
  readonly dropout: number;
  /** Dropout applies only while training. */
  training = true;
  /** Floating-point operations executed by the LoRA kernels (forward and backward). */
  flops = 0;
  profile: StepProfile | undefined;
  readonly #modules = new Map<string, Module>();
  readonly #order: Module[] = [];
  readonly #params: F32;
  readonly #grads: F32;
  readonly #m: F32;
  readonly #v: F32;
  #xa: F32 | null = null;
  #xaRows = 0;
  /** The XA buffer's rank per slot: the largest module rank when it was allocated. */
  #xaRank = 0;
  #dxTmp: F32 | null = null;
  #dropRng: () => number;
  /** The pass that forward/backward serve now, and the saved state of the others (usePass). */
  #pass = 0;
  readonly #otherPasses = new Map<number, PassState>();

  constructor(readonly k: Kernels, readonly config: LlamaConfig, opts: LoraOptions) {
    const { rank, alpha } = opts;
    if (!Number.isInteger(rank) || rank < 1) {
      throw new RangeError(`LocalLora: rank must be a positive integer, got ${rank}`);
    }
    if (!Number.isFinite(alpha)) {
      throw new RangeError(`LocalLora: alpha must be finite, got ${alpha}`);
    }
    const dropout = opts.dropout ?? 0;
    if (!(dropout >= 0 && dropout < 1)) {
      throw new RangeError(`LocalLora: dropout must lie in [0, 1), got ${dropout}`);
    }
    this.rank = rank;
    this.alpha = alpha;
    this.scale = alpha / rank;
    this.dropout = dropout;
    this.profile = opts.profile;
    this.targets = PROJS.filter((p) => (opts.targets ?? PROJS).includes(p));
    this.#dropRng = mulberry32(opts.dropoutSeed ?? 0);

    const shapes: { layer: number; proj: Proj; inDim: number; outDim: number }[] = [];
    for (let layer = 0; layer < config.nLayers; layer++) {
      for (const proj of this.targets) shapes.push({ layer, proj, ...projDims(config, proj) });
    }
    const total = shapes.reduce((s, m) => s + rank * (m.inDim + m.outDim), 0);
    this.#params = k.alloc([total]);
    this.#grads = k.alloc([total]);
    this.#m = k.alloc([total]);
    this.#v = k.alloc([total]);
    for (const a of [this.#params, this.#grads, this.#m, this.#v]) a.data.fill(0);

    const rand = mulberry32(opts.seed ?? 0);
    let at = 0;
    for (const s of shapes) {
      const nA = rank * s.inDim, n = nA + s.outDim * rank;
      const sub = (a: F32, off: number, len: number, shape: number[]) =>
        new WasmArray(k, "f32", a.ptr + 4 * (at + off), len, shape);
      const m: Module = {
        index: this.#order.length,
        ...s,
        key: moduleKey(s.layer, s.proj),
        rank,
        own: null,
        params: sub(this.#params, 0, n, [n]),
        A: sub(this.#params, 0, nA, [rank, s.inDim]),
        B: sub(this.#params, nA, n - nA, [s.outDim, rank]),
        grad: sub(this.#grads, 0, n, [n]),
        dA: sub(this.#grads, 0, nA, [rank, s.inDim]),
        dB: sub(this.#grads, nA, n - nA, [s.outDim, rank]),
        m: sub(this.#m, 0, n, [n]),
        v: sub(this.#v, 0, n, [n]),
        step: 0,
        active: true,
        X: null,
        XA: null,
        M: 0,
        mask: null,
        Xd: null,
      };
      // PEFT: kaiming_uniform_(A, a=√5) → bound = √(6/((1+a²)·fan_in)) = 1/√in.
      const bound = 1 / Math.sqrt(s.inDim), A = m.A.data;
      for (let i = 0; i < nA; i++) A[i] = (2 * rand() - 1) * bound;
      this.#modules.set(m.key, m);
      this.#order.push(m);
      at += n;
    }
  }

  // --- hooks ---------------------------------------------------------------------------------

  isActive(layer: number, proj: Proj): boolean {
    return this.#modules.get(moduleKey(layer, proj))?.active ?? false;
  }

  forward(layer: number, X: F32, outputs: readonly ProjOutput[]): void {
    const p = this.profile, t = p ? p.now() : 0;
    for (const { proj, Y } of outputs) {
      const m = this.#module(layer, proj, "forward");
      const M = rowsOf(X, m.inDim, `forward(${m.key}): X`);
      const XA = this.#xaOf(m, M);
      let Xin = X;
      if (this.dropout > 0 && this.training) Xin = this.#drop(m, X, M);
      else m.mask = null;
      loraForward(this.k, Y, XA, Xin, m.A, m.B, M, m.inDim, m.rank, m.outDim, this.scale, {
        accumulate: true,
      });
      this.flops += loraForwardFlops(M, m.inDim, m.rank, m.outDim);
      m.X = Xin;
      m.M = M;
    }
    if (p) p.lap("lora.local.fwd", t);
  }

  backward(layer: number, grads: readonly ProjGrad[], dX: F32 | null): void {
    const p = this.profile, t = p ? p.now() : 0;
    const s = this.scale;
    for (const { proj, G } of grads) {
      const m = this.#module(layer, proj, "backward"), r = m.rank;
      if (m.X === null || m.XA === null) {
        throw new Error(
          `LocalLora.backward(${m.key}): no forward of this module to go back through`,
        );
      }
      const M = m.M;
      if (G.length !== M * m.outDim || (dX !== null && dX.length !== M * m.inDim)) {
        throw new RangeError(
          `LocalLora.backward(${m.key}): G has ${G.length} values and dX ${dX?.length}, ` +
            `expected ${M}·${m.outDim} and ${M}·${m.inDim} from the forward's ${M} rows`,
        );
      }
      // With dropout the LoRA path's dX goes through the same mask: (s·G·B·A) ⊙ mask/(1−p).
      const mask = m.mask;
      const into = mask === null || dX === null ? dX : this.#tmpDx(M * m.inDim);
      const out = { dX: into, dA: m.dA, dB: m.dB };
      loraBackward(this.k, out, G, m.X, m.XA, m.A, m.B, M, m.inDim, r, m.outDim, s, {
        accumulateGrads: true,
        accumulateDx: mask === null,
      });
      if (mask !== null && dX !== null && into !== null) {
        const keep = 1 / (1 - this.dropout), d = dX.data, g = into.data;
        for (let i = 0; i < mask.length; i++) if (mask[i]) d[i] += g[i] * keep;
      }
      this.flops += loraBackwardFlops(M, m.inDim, r, m.outDim, { dX: dX !== null });
      m.X = null;
    }
    if (p) p.lap("lora.local.bwd", t);
  }

  /**
   * Which pass in flight the next forward/backward calls belong to (default 0). Each pass keeps
   * its own forward state (X, X·Aᵀ, dropout) until its backward, so several micro-batches may be
   * between their forward and backward at once (a device pipelining micro-batches); all of them
   * accumulate into the same dA, dB.
   */
  usePass(id: number): void {
    if (id === this.#pass) return;
    this.#otherPasses.set(this.#pass, {
      xa: this.#xa,
      xaRows: this.#xaRows,
      xaRank: this.#xaRank,
      modules: this.#order.map((m) => ({ X: m.X, XA: m.XA, M: m.M, mask: m.mask, Xd: m.Xd })),
    });
    const next = this.#otherPasses.get(id);
    this.#otherPasses.delete(id);
    this.#xa = next?.xa ?? null;
    this.#xaRows = next?.xaRows ?? 0;
    this.#xaRank = next?.xaRank ?? 0;
    this.#order.forEach((m, i) => {
      const saved = next?.modules[i];
      m.X = saved?.X ?? null;
      m.XA = saved?.XA ?? null;
      m.M = saved?.M ?? 0;
      m.mask = saved?.mask ?? null;
      m.Xd = saved?.Xd ?? null;
    });
    this.#pass = id;
  }

  // --- active set ----------------------------------------------------------------------------

  /** Keys ("3.q") of every module, in order. */
  moduleKeys(): string[] {
    return this.#order.map((m) => m.key);
  }

  activeKeys(): string[] {
    return this.#order.filter((m) => m.active).map((m) => m.key);
  }

  /** Activates (revives) or detaches (kills) one module. Weights and moments are kept. */
  setActive(layer: number, proj: Proj, active: boolean): void {
    this.#module(layer, proj, "setActive").active = active;
  }

  /** Exactly the modules named by `keys` ("3.q") are active afterwards. */
  setActiveKeys(keys: Iterable<string>): void {
    const on = new Set(keys);
    for (const key of on) {
      if (!this.#modules.has(key)) throw new Error(`LocalLora.setActiveKeys: no module "${key}"`);
    }
    for (const m of this.#order) m.active = on.has(m.key);
  }

  /** Parameters (A and B) of the named modules, each at its own rank. */
  parameterCount(keys: Iterable<string>): number {
    let n = 0;
    for (const key of keys) {
      const m = this.#modules.get(key);
      if (m === undefined) throw new Error(`LocalLora.parameterCount: no module "${key}"`);
      n += m.params.length;
    }
    return n;
  }

  /** A module's rank: the LoRA's, or more once grown. */
  rankOf(layer: number, proj: Proj): number {
    return this.#module(layer, proj, "rankOf").rank;
  }

  /**
   * Grows the named modules to `rank` (each capped at min(in, out), past which a rank adds
   * nothing); modules already there are left alone. The product is unchanged: A gets new rows
   * drawn as at initialisation (from `seed`), B zero columns, and the AdamW moments zeros for
   * them, so s·B·A and the module's output stay exactly what they were while the new directions
   * start training. s stays alpha / (the LoRA's rank). Grow between steps: a grown module forgets
   * its last forward, so a backward through it afterwards is refused. Returns the modules grown.
   */
  growRank(keys: Iterable<string>, rank: number, seed = 0): string[] {
    if (!Number.isInteger(rank) || rank < 1) {
      throw new RangeError(`LocalLora.growRank: rank must be a positive integer, got ${rank}`);
    }
    const want = [...keys].map((key) => {
      const m = this.#modules.get(key);
      if (m === undefined) throw new Error(`LocalLora.growRank: no module "${key}"`);
      return m;
    });
    const rand = mulberry32(seed), grown: string[] = [];
    for (const m of want) {
      const r1 = Math.min(rank, m.inDim, m.outDim), r0 = m.rank;
      if (r1 <= r0) continue;
      const { inDim, outDim } = m, n = r1 * (inDim + outDim), nA = r1 * inDim;
      // [A | B] of rank r0 → rank r1: A's rows stay and new ones follow; B's rows widen.
      const widen = (old: Float32Array, fresh: Float32Array, newA: (i: number) => number) => {
        fresh.set(old.subarray(0, r0 * inDim));
        for (let i = r0 * inDim; i < nA; i++) fresh[i] = newA(i);
        for (let o = 0; o < outDim; o++) {
          for (let j = 0; j < r0; j++) fresh[nA + o * r1 + j] = old[r0 * inDim + o * r0 + j];
        }
      };
      const bound = 1 / Math.sqrt(inDim);
      const [params, grad, mom, vel] = [0, 1, 2, 3].map(() => {
        const a = this.k.alloc([n]);
        a.data.fill(0);
        return a;
      });
      widen(m.params.data, params.data, () => (2 * rand() - 1) * bound);
      widen(m.m.data, mom.data, () => 0);
      widen(m.v.data, vel.data, () => 0);
      for (const a of m.own ?? []) a.free();
      const view = (a: F32, off: number, len: number, shape: number[]) =>
        new WasmArray(this.k, "f32", a.ptr + 4 * off, len, shape);
      Object.assign(m, {
        rank: r1,
        own: [params, grad, mom, vel],
        params,
        A: view(params, 0, nA, [r1, inDim]),
        B: view(params, nA, n - nA, [outDim, r1]),
        grad,
        dA: view(grad, 0, nA, [r1, inDim]),
        dB: view(grad, nA, n - nA, [outDim, r1]),
        m: mom,
        v: vel,
        X: null,
        XA: null,
      });
      grown.push(m.key);
    }
    // The XA buffer's slots are sized for the largest rank: make them anew.
    if (grown.length > 0) {
      this.#xa?.free();
      this.#xa = null;
      for (const o of this.#order) o.XA = null;
      const changed = new Set(grown);
      for (const p of this.#otherPasses.values()) {
        p.xa?.free();
        p.xa = null;
        p.modules.forEach((o, i) => {
          o.XA = null;
          if (changed.has(this.#order[i].key)) o.X = null;
        });
      }
    }
    return grown;
  }

  // --- optimizer -----------------------------------------------------------------------------

  zeroGrad(): void {
    this.#grads.data.fill(0);
    for (const m of this.#order) if (m.own !== null) m.grad.data.fill(0);
  }

  /** Global-norm clipping over the active modules' gradients; returns the norm before. */
  clipGradNorm(maxNorm: number): number {
    return clipGradNorm(this.k, this.#order.filter((m) => m.active).map((m) => m.grad), maxNorm);
  }

  /** Norm of the active modules' gradients. */
  gradNorm(): number {
    let sum = 0;
    for (const m of this.#order) if (m.active) sum += sumSquares(this.k, m.grad);
    return Math.sqrt(sum);
  }

  /** One AdamW step of every active module; detached modules keep weights and moments. */
  step(cfg: LoraOptimizerConfig): void {
    for (const m of this.#order) {
      if (!m.active) continue;
      m.step++;
      adamwStep(this.k, { param: m.params, grad: m.grad, m: m.m, v: m.v }, {
        ...cfg,
        step: m.step,
      });
    }
  }

  // --- state in and out ----------------------------------------------------------------------

  /** Copies of A and B keyed by "layer.proj": the active modules (default) or all. */
  exportWeights(which: "active" | "all" = "active"): Map<string, LoraWeights> {
    const out = new Map<string, LoraWeights>();
    for (const m of this.#order) {
      if (which === "all" || m.active) out.set(m.key, { A: m.A.toArray(), B: m.B.toArray() });
    }
    return out;
  }

  /** Sets A and B of the named modules (others unchanged); moments are kept. */
  importWeights(weights: Map<string, LoraWeights> | Record<string, LoraWeights>): void {
    const entries = weights instanceof Map ? [...weights] : Object.entries(weights);
    for (const [key, w] of entries) {
      const m = this.#modules.get(key);
      if (m === undefined) {
        throw new Error(
          `LocalLora.importWeights: no module "${key}" (targets ${this.targets.join(",")}, ` +
            `${this.config.nLayers} layers)`,
        );
      }
      for (const [name, got, want] of [["A", w.A, m.A], ["B", w.B, m.B]] as const) {
        if (got.length !== want.length) {
          throw new RangeError(
            `LocalLora.importWeights: ${key}.${name} has ${got.length} values, expected ` +
              `${want.shape.join("×")} = ${want.length}`,
          );
        }
      }
      m.A.set(w.A);
      m.B.set(w.B);
    }
  }

  /** Copies of one module's A and B. */
  weights(layer: number, proj: Proj): LoraWeights {
    const m = this.#module(layer, proj, "weights");
    return { A: m.A.toArray(), B: m.B.toArray() };
  }

  /** Copies of a module's gradients (as accumulated since zeroGrad). */
  grads(layer: number, proj: Proj): { dA: Float32Array; dB: Float32Array } {
    const m = this.#module(layer, proj, "grads");
    return { dA: m.dA.toArray(), dB: m.dB.toArray() };
  }

  /** The dropout mask (M·in, 1 = kept) of a module's last training forward, or null. */
  dropoutMask(layer: number, proj: Proj): Uint8Array | null {
    return this.#module(layer, proj, "dropoutMask").mask?.slice() ?? null;
  }

  /** Restarts the dropout masks' stream (reproducible masks, e.g. for gradient checks). */
  seedDropout(seed: number): void {
    this.#dropRng = mulberry32(seed);
  }

  /** Copies of a module's AdamW moments over [A | B], and its step count. */
  optimizerState(layer: number, proj: Proj): { m: Float32Array; v: Float32Array; step: number } {
    const m = this.#module(layer, proj, "optimizerState");
    return { m: m.m.toArray(), v: m.v.toArray(), step: m.step };
  }

  free(): void {
    for (const a of [this.#params, this.#grads, this.#m, this.#v]) a.free();
    for (const m of this.#order) for (const a of m.own ?? []) a.free();
    this.#xa?.free();
    this.#dxTmp?.free();
    for (const m of this.#order) m.Xd?.free();
    for (const p of this.#otherPasses.values()) {
      p.xa?.free();
      for (const m of p.modules) m.Xd?.free();
    }
    this.#otherPasses.clear();
    this.#xa = this.#dxTmp = null;
  }

  // -------------------------------------------------------------------------------------------

  #module(layer: number, proj: Proj, fn: string): Module {
    const m = this.#modules.get(moduleKey(layer, proj));
    if (m === undefined) {
      throw new Error(
        `LocalLora.${fn}: no module for layer ${layer} ${proj} (targets ${
          this.targets.join(",")
        }, ${this.config.nLayers} layers)`,
      );
    }
    return m;
  }

  /** The module's XA (M,r), a slice of one buffer holding every module's (grown on demand). */
  #xaOf(m: Module, M: number): F32 {
    if (M > this.#xaRows || this.#xa === null) {
      this.#xa?.free();
      this.#xaRows = M;
      this.#xaRank = Math.max(...this.#order.map((o) => o.rank));
      this.#xa = this.k.alloc([this.#order.length * M * this.#xaRank]);
      for (const o of this.#order) o.XA = null;
    }
    if (m.XA === null || m.XA.length !== M * m.rank) {
      const at = this.#xa.ptr + 4 * m.index * this.#xaRows * this.#xaRank;
      m.XA = new WasmArray(this.k, "f32", at, M * m.rank, [M, m.rank]);
    }
    return m.XA;
  }

  #tmpDx(n: number): F32 {
    if (this.#dxTmp === null || this.#dxTmp.length < n) {
      this.#dxTmp?.free();
      this.#dxTmp = this.k.alloc([n]);
    }
    return this.#dxTmp.length === n
      ? this.#dxTmp
      : new WasmArray(this.k, "f32", this.#dxTmp.ptr, n, [n]);
  }

  /** X ⊙ mask/(1−p) into the module's own buffer, with a fresh mask. */
  #drop(m: Module, X: F32, M: number): F32 {
    const n = M * m.inDim;
    if (m.Xd === null || m.Xd.length !== n) {
      m.Xd?.free();
      m.Xd = this.k.alloc([M, m.inDim]);
    }
    if (m.mask === null || m.mask.length !== n) m.mask = new Uint8Array(n);
    const keep = 1 / (1 - this.dropout), p = this.dropout, rand = this.#dropRng;
    const x = X.data, xd = m.Xd.data, mask = m.mask;
    for (let i = 0; i < n; i++) {
      const kept = rand() >= p;
      mask[i] = kept ? 1 : 0;
      xd[i] = kept ? x[i] * keep : 0;
    }
    return m.Xd;
  }
}

function rowsOf(X: F32, inDim: number, what: string): number {
  const M = X.length / inDim;
  if (!Number.isInteger(M) || M < 1) {
    throw new RangeError(
      `LocalLora.${what} has ${X.length} values, not a whole number of rows of ${inDim}`,
    );
  }
  return M;
}

/** Seeded uniform [0,1) stream (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
