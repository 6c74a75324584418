/**
 * The transformer blocks of a Llama model: the coordinator's share of the U-shaped split
 * (DLORA.md §2). Frozen weights live in wasm memory; activations are allocated once per batch
 * shape and reused. At every projection group the block calls the LoRA hooks (hooks.ts), so the
 * same code serves single-process training and the split.
 *
 * Dimension names (fixed for the file): B batch, T positions, M = B·T rows, D model width,
 * H MLP width, NH query heads, NKV kv heads, hs head size, Dq = NH·hs, Dkv = NKV·hs.
 * Per layer: h (M,D) → RMSNorm → q (M,Dq), k, v (M,Dkv) → RoPE → causal GQA attention → ao (M,Dq)
 * → hMid = h + ao·Woᵀ → RMSNorm → g, u (M,H) → hm = silu(g)·u → hOut = hMid + hm·Wdownᵀ.
 */
import {
  attentionBackward,
  attentionDecode,
  attentionForward,
  type F32,
  gemmDyW,
  gemmXWt,
  type Kernels,
  kvCacheWrite,
  rmsnormBackward,
  rmsnormForward,
  ropeBackward,
  ropeForward,
  type RopeStyle,
  ropeTable,
  swigluBackward,
  swigluForward,
  WasmArray,
} from "../../kernels/mod.ts";
import { Arena, copyRows, type Freeable, ShapeCache } from "./buffers.ts";
import type { LoraHooks, Proj, ProjGrad, ProjOutput } from "./hooks.ts";
import type { StepProfile } from "./profile.ts";
import { headSize, type LlamaConfig, type LlamaLayer } from "./weights.ts";

export interface BatchShape {
  /** Sequences. */
  B: number;
  /** Positions per sequence. */
  T: number;
}

export interface BlocksOptions {
  /**
   * RoPE pairing of the q/k rows. The canonical weights (weights.ts) keep q/k rows in the
   * Hugging Face order, so the default "rotate-half" is right for every loader.
   */
  ropeStyle?: RopeStyle;
  /**
   * Concatenate wq|wk|wv and gate|up at upload so each input group costs one GEMM (its output
   * is then split into the per-projection buffers by row copies). Default false: measured on
   * stories260K and SmolLM-135M shapes, the copies cost what the bigger GEMM saves.
   */
  fuse?: boolean;
  /** Time every kernel call into this profile. */
  profile?: StepProfile;
  /**
   * Keep one (B,NH,T,T) attention-probability buffer for all layers instead of one per layer;
   * the attention backward of every layer but the last then recomputes the probabilities from
   * the saved q, k (after RoPE), one head at a time. Default true: it saves (L−1)·B·NH·T² floats
   * (67 MB of stories260K's 8×256 step) for ~10 % of that step's time. The gradients are
   * bitwise the same either way.
   */
  recomputeAttention?: boolean;
}

export interface ForwardOptions {
  /** Save every layer's activations for `backward` (default true); false shares one set. */
  grad?: boolean;
}

/** Frozen projections sharing one input X (M,K); output j is Y_j (M,N_j). */
class FrozenGroup implements Freeable {
  /** One (N_j,K) matrix per projection, or one (ΣN,K) matrix when fused. */
  readonly W: F32[];
  readonly total: number;

  constructor(
    readonly k: Kernels,
    mats: readonly Float32Array[],
    readonly N: readonly number[],
    readonly K: number,
    readonly fused: boolean,
  ) {
    this.total = N.reduce((a, b) => a + b, 0);
    if (fused && mats.length > 1) {
      const cat = new Float32Array(this.total * K);
      let at = 0;
      for (const m of mats) {
        cat.set(m, at);
        at += m.length;
      }
      this.W = [k.from(cat, [this.total, K])];
    } else {
      this.W = mats.map((m, j) => k.from(m, [N[j], K]));
    }
  }

  /** Y_j = X·W_jᵀ. `cat` (M,ΣN) is scratch for the fused product. */
  forward(Y: readonly F32[], X: F32, M: number, cat: F32 | null): void {
    const { k, K } = this;
    if (this.W.length === Y.length) {
      for (let j = 0; j < Y.length; j++) gemmXWt(k, Y[j], X, this.W[j], M, K, this.N[j]);
      return;
    }
    const c = view(k, cat!, M * this.total, [M, this.total]);
    gemmXWt(k, c, X, this.W[0], M, K, this.total);
    let col = 0;
    for (let j = 0; j < Y.length; j++) {
      copyRows(k, Y[j], this.N[j], 0, c, this.total, col, M, this.N[j]);
      col += this.N[j];
    }
  }

  /** dX = Σ_j G_j·W_j (overwritten). */
  backward(dX: F32, G: readonly F32[], M: number, cat: F32 | null): void {
    const { k, K } = this;
    if (this.W.length === G.length) {
      for (let j = 0; j < G.length; j++) {
        gemmDyW(k, dX, G[j], this.W[j], M, this.N[j], K, { accumulate: j > 0 });
      }
      return;
    }
    const c = view(k, cat!, M * this.total, [M, this.total]);
    let col = 0;
    for (let j = 0; j < G.length; j++) {
      copyRows(k, c, this.total, col, G[j], this.N[j], 0, M, this.N[j]);
      col += this.N[j];
    }
    gemmDyW(k, dX, c, this.W[0], M, this.total, K);
  }

  free(): void {
    for (const w of this.W) w.free();
  }
}

/** The first `length` floats of `a` as an array of its own shape (no copy, no wasm allocation). */
function view(k: Kernels, a: F32, length: number, shape: number[]): F32 {
  if (a.length === length) return a;
  return new WasmArray(k, "f32", a.ptr, length, shape);
}

interface LayerWeights {
  attnNorm: F32;
  ffnNorm: F32;
  qkv: FrozenGroup;
  wo: F32;
  gateUp: FrozenGroup;
  down: F32;
}

/** One layer's activations; in a no-grad workspace every layer shares one set. */
interface LayerActs {
  hIn: F32; // (M,D)
  rstd1: F32; // (M)
  xn1: F32; // (M,D)   input of q, k, v
  q: F32; // (M,Dq)  after RoPE
  k: F32; // (M,Dkv) after RoPE
  v: F32; // (M,Dkv)
  att: F32 | null; // (B,NH,T,T) softmax probabilities, shared with recompute; null decoding
  ao: F32; // (M,Dq)  attention output, input of o
  hMid: F32; // (M,D)
  rstd2: F32; // (M)
  xn2: F32; // (M,D)   input of gate, up
  g: F32; // (M,H)
  u: F32; // (M,H)
  hm: F32; // (M,H)   silu(g)·u, input of down
  hOut: F32; // (M,D)
}

/** Gradient buffers, shared by all layers. */
interface GradBufs {
  dres: F32; // (M,D) ∂L/∂(residual stream) at the current point
  dxn: F32; // (M,D)
  dq: F32;
  dk: F32;
  dv: F32;
  dao: F32;
  dg: F32;
  du: F32;
  dhm: F32;
}

/** Which modules a forward found active, replayed by its backward. */
export interface LayerActive {
  qkv: Proj[];
  o: boolean;
  gateUp: Proj[];
  down: boolean;
}

class Workspace implements Freeable {
  readonly arena: Arena;
  readonly M: number;
  readonly acts: LayerActs[];
  readonly grads: GradBufs | null;
  /** Scratch for fused products: (M, max(Dq+2·Dkv, 2H)). */
  readonly cat: F32 | null;
  readonly active: LayerActive[] = [];
  /** With a shared attention buffer: the layer whose probabilities it holds (-1: none). */
  attLayer = -1;

  constructor(
    k: Kernels,
    c: LlamaConfig,
    readonly shape: BatchShape,
    readonly grad: boolean,
    decode: boolean,
    fused: boolean,
    readonly recompute: boolean,
  ) {
    const a = (this.arena = new Arena(k));
    const { B, T } = shape;
    const M = (this.M = B * T);
    const D = c.dim, H = c.hiddenDim, hs = headSize(c), Dq = c.nHeads * hs;
    const Dkv = c.nKvHeads * hs, L = c.nLayers;
    // One probabilities buffer for every layer unless each layer keeps its own for the backward.
    const sharedAtt = decode ? null : a.take([B, c.nHeads, T, T]);
    const attOf = (l: number) =>
      l === 0 || !grad || recompute || decode ? sharedAtt : a.take([B, c.nHeads, T, T]);
    const layerSet = (hIn: F32, hOut: F32, l: number): LayerActs => ({
      hIn,
      rstd1: a.take([M]),
      xn1: a.take([M, D]),
      q: a.take([M, Dq]),
      k: a.take([M, Dkv]),
      v: a.take([M, Dkv]),
      att: attOf(l),
      ao: a.take([M, Dq]),
      hMid: a.take([M, D]),
      rstd2: a.take([M]),
      xn2: a.take([M, D]),
      g: a.take([M, H]),
      u: a.take([M, H]),
      hm: a.take([M, H]),
      hOut,
    });
    if (grad) {
      const res = Array.from({ length: L + 1 }, () => a.take([M, D]));
      this.acts = Array.from({ length: L }, (_, l) => layerSet(res[l], res[l + 1], l));
      this.grads = {
        dres: a.take([M, D]),
        dxn: a.take([M, D]),
        dq: a.take([M, Dq]),
        dk: a.take([M, Dkv]),
        dv: a.take([M, Dkv]),
        dao: a.take([M, Dq]),
        dg: a.take([M, H]),
        du: a.take([M, H]),
        dhm: a.take([M, H]),
      };
    } else {
      // Ping-pong the residual stream; everything else is overwritten layer by layer.
      const res = [a.take([M, D]), a.take([M, D])];
      const shared = layerSet(res[0], res[1], 0);
      this.acts = Array.from(
        { length: L },
        (_, l) => ({ ...shared, hIn: res[l % 2], hOut: res[(l + 1) % 2] }),
      );
      this.grads = null;
    }
    this.cat = fused ? a.take([M, Math.max(Dq + 2 * Dkv, 2 * H)]) : null;
  }

  free(): void {
    this.arena.free();
  }
}

/** Per-layer KV cache for generation: keys/values (B,NKV,maxT,hs) after RoPE. */
export class KvCache implements Freeable {
  readonly keys: F32[];
  readonly values: F32[];
  /** Attention probabilities scratch (B,NH,maxT). */
  readonly scores: F32;
  readonly #arena: Arena;

  constructor(k: Kernels, c: LlamaConfig, readonly B: number, readonly maxT: number) {
    const a = (this.#arena = new Arena(k)), hs = headSize(c);
    this.keys = Array.from({ length: c.nLayers }, () => a.take([B, c.nKvHeads, maxT, hs]));
    this.values = Array.from({ length: c.nLayers }, () => a.take([B, c.nKvHeads, maxT, hs]));
    this.scores = a.take([B, c.nHeads, maxT]);
  }

  free(): void {
    this.#arena.free();
  }
}

type Mode =
  | { kind: "full" }
  | { kind: "prefill"; cache: KvCache }
  | { kind: "decode"; cache: KvCache; pos: number };

const FULL: Mode = { kind: "full" };

export class LlamaBlocks implements Freeable {
  readonly config: LlamaConfig;
  readonly ropeStyle: RopeStyle;
  readonly fused: boolean;
  readonly recomputeAttention: boolean;
  profile: StepProfile | undefined;
  readonly #layers: LayerWeights[];
  readonly #workspaces = new ShapeCache<Workspace>(3);
  #rope: F32 | null = null;
  #last: Workspace | null = null;
  /** Set while a pass awaits its hooks: passes share buffers, so they run one at a time. */
  #busy: string | null = null;
  /** False for a `share()`d instance: the weights belong to the instance it was made from. */
  readonly #ownsWeights: boolean;
  /** Hands the weights to the constructor during `share()` (never set otherwise). */
  static #adopt: LayerWeights[] | null = null;

  /** Uploads the frozen layer weights of `config` into `k`'s memory. */
  constructor(
    readonly k: Kernels,
    config: LlamaConfig,
    layers: readonly LlamaLayer[],
    opts: BlocksOptions = {},
  ) {
    const adopt = LlamaBlocks.#adopt;
    LlamaBlocks.#adopt = null;
    if (adopt === null && layers.length !== config.nLayers) {
      throw new RangeError(
        `LlamaBlocks: ${layers.length} layers given, the config says ${config.nLayers}`,
      );
    }
    this.config = { ...config };
    this.ropeStyle = opts.ropeStyle ?? "rotate-half";
    this.fused = opts.fuse ?? false;
    this.recomputeAttention = opts.recomputeAttention ?? true;
    this.profile = opts.profile;
    const c = config, D = c.dim, H = c.hiddenDim, hs = headSize(c);
    const Dq = c.nHeads * hs, Dkv = c.nKvHeads * hs;
    this.#ownsWeights = adopt === null;
    this.#layers = adopt ?? layers.map((w) => ({
      attnNorm: k.from(w.attnNorm, [D]),
      ffnNorm: k.from(w.ffnNorm, [D]),
      qkv: new FrozenGroup(k, [w.wq, w.wk, w.wv], [Dq, Dkv, Dkv], D, this.fused),
      wo: k.from(w.wo, [D, Dq]),
      gateUp: new FrozenGroup(k, [w.gate, w.up], [H, H], D, this.fused),
      down: k.from(w.down, [D, H]),
    }));
  }

  /**
   * Runs every block on h0 (B,T,D) and returns hL (B,T,D), a buffer owned by the blocks and
   * valid until the next forward of the same shape. With `grad` (default) every layer's
   * activations are kept for `backward`.
   */
  async forward(
    h0: F32 | Float32Array,
    shape: BatchShape,
    hooks?: LoraHooks,
    opts: ForwardOptions = {},
  ): Promise<F32> {
    return await this.#exclusive("forward", async () => {
      const grad = opts.grad ?? true;
      this.#last = null; // any pass may reuse or free the pending backward's buffers
      const ws = this.#workspace(shape, grad, false);
      this.#input(ws.acts[0].hIn, h0, "forward", "h0");
      for (let l = 0; l < this.config.nLayers; l++) await this.#layer(l, ws, hooks, FULL);
      if (grad) this.#last = ws;
      return ws.acts[this.config.nLayers - 1].hOut;
    });
  }

  /**
   * Back through every block from dhL = ∂L/∂hL (B,T,D) of the last `forward` with grad, calling
   * the hooks for the modules that forward found active. Frozen weights get no gradient. Returns
   * ∂L/∂h0 (B,T,D), valid until the next backward of the same shape.
   */
  async backward(dhL: F32 | Float32Array, hooks?: LoraHooks): Promise<F32>;
  /**
   * With `inputGrad: false`, ∂L/∂h0 is not wanted (the embedding is frozen): the pass stops at
   * the first module in forward order that the forward found active, whose hook gets dX = null,
   * and nothing below it runs. The modules' gradients are the same; the result is null.
   */
  async backward(
    dhL: F32 | Float32Array,
    hooks: LoraHooks | undefined,
    opts: { inputGrad: false },
  ): Promise<null>;
  async backward(
    dhL: F32 | Float32Array,
    hooks?: LoraHooks,
    opts: { inputGrad?: boolean } = {},
  ): Promise<F32 | null> {
    return await this.#exclusive("backward", async () => {
      const ws = this.#last;
      if (ws === null || ws.grads === null) {
        throw new Error(
          "LlamaBlocks.backward: no forward to go back through; run forward(h0, shape, hooks) " +
            "with grad (the default) first, and do not run another forward in between",
        );
      }
      const g = ws.grads;
      this.#input(g.dres, dhL, "backward", "dhL");
      this.#last = null;
      if (opts.inputGrad !== false) {
        for (let l = this.config.nLayers - 1; l >= 0; l--) {
          await this.#layerBackward(l, ws, hooks, NO_STOP);
        }
        return g.dres;
      }
      const first = firstActive(ws.active);
      if (first === null) return null;
      for (let l = this.config.nLayers - 1; l >= first.layer; l--) {
        await this.#layerBackward(l, ws, hooks, l === first.layer ? first.group : NO_STOP);
      }
      return null;
    });
  }

  /**
   * Another LlamaBlocks over the same frozen weights (no second upload) with its own
   * activations, so several passes can be in flight at once: one per coordinator session.
   * Freeing it frees only its activations; free the instance that uploaded the weights last.
   */
  share(opts: { profile?: StepProfile } = {}): LlamaBlocks {
    LlamaBlocks.#adopt = this.#layers;
    try {
      return new LlamaBlocks(this.k, this.config, [], {
        ropeStyle: this.ropeStyle,
        fuse: this.fused,
        recomputeAttention: this.recomputeAttention,
        profile: opts.profile,
      });
    } finally {
      LlamaBlocks.#adopt = null;
    }
  }

  /** A KV cache for generating up to maxT positions of B sequences. */
  createCache(B: number, maxT: number): KvCache {
    return new KvCache(this.k, this.config, B, maxT);
  }

  /** Forward over a prompt h0 (B,T,D) at positions 0..T-1, filling `cache`; returns hL. */
  async prefill(
    h0: F32 | Float32Array,
    shape: BatchShape,
    cache: KvCache,
    hooks?: LoraHooks,
  ): Promise<F32> {
    if (shape.B !== cache.B || shape.T > cache.maxT) {
      throw new RangeError(
        `LlamaBlocks.prefill: shape ${shape.B}×${shape.T} does not fit a cache of ` +
          `${cache.B} sequences × ${cache.maxT} positions`,
      );
    }
    return await this.#exclusive("prefill", async () => {
      this.#last = null; // any pass may reuse or free the pending backward's buffers
      const ws = this.#workspace(shape, false, false);
      this.#input(ws.acts[0].hIn, h0, "prefill", "h0");
      const mode: Mode = { kind: "prefill", cache };
      for (let l = 0; l < this.config.nLayers; l++) await this.#layer(l, ws, hooks, mode);
      return ws.acts[this.config.nLayers - 1].hOut;
    });
  }

  /**
   * One generation step: x (B,1,D) is the embedding of each sequence's token at position `pos`
   * (positions 0..pos-1 already in `cache`). Returns hL (B,1,D).
   */
  async decode(
    x: F32 | Float32Array,
    pos: number,
    cache: KvCache,
    hooks?: LoraHooks,
  ): Promise<F32> {
    if (!Number.isInteger(pos) || pos < 0 || pos >= cache.maxT) {
      throw new RangeError(
        `LlamaBlocks.decode: position ${pos} is outside the cache's 0..${cache.maxT - 1}`,
      );
    }
    return await this.#exclusive("decode", async () => {
      this.#last = null;
      const ws = this.#workspace({ B: cache.B, T: 1 }, false, true);
      this.#input(ws.acts[0].hIn, x, "decode", "x");
      const mode: Mode = { kind: "decode", cache, pos };
      for (let l = 0; l < this.config.nLayers; l++) await this.#layer(l, ws, hooks, mode);
      return ws.acts[this.config.nLayers - 1].hOut;
    });
  }

  free(): void {
    this.#workspaces.clear();
    this.#last = null;
    for (const w of this.#ownsWeights ? this.#layers : []) {
      for (const a of [w.attnNorm, w.ffnNorm, w.wo, w.down]) a.free();
      w.qkv.free();
      w.gateUp.free();
    }
    this.#rope?.free();
    this.#rope = null;
  }

  // -------------------------------------------------------------------------------------------

  async #exclusive<R>(pass: string, run: () => Promise<R>): Promise<R> {
    if (this.#busy !== null) {
      throw new Error(
        `LlamaBlocks.${pass}: a ${this.#busy} is still running on these blocks; passes share ` +
          "buffers, so await one before starting the next (or use another LlamaBlocks)",
      );
    }
    this.#busy = pass;
    try {
      return await run();
    } finally {
      this.#busy = null;
    }
  }

  #workspace(shape: BatchShape, grad: boolean, decode: boolean): Workspace {
    const { B, T } = shape;
    for (const [name, v] of [["B", B], ["T", T]] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`LlamaBlocks: ${name} must be a positive integer, got ${v}`);
      }
    }
    const key = `${B}x${T}:${grad ? "grad" : "nograd"}:${decode ? "decode" : "full"}`;
    return this.#workspaces.get(
      key,
      () =>
        new Workspace(
          this.k,
          this.config,
          shape,
          grad,
          decode,
          this.fused,
          this.recomputeAttention,
        ),
    );
  }

  #input(dst: F32, src: F32 | Float32Array, fn: string, name: string): void {
    if (src === dst) return;
    if (src.length !== dst.length) {
      throw new RangeError(
        `LlamaBlocks.${fn}: ${name} has ${src.length} values, expected B·T·D = ${dst.length}`,
      );
    }
    dst.data.set(src instanceof Float32Array ? src : src.data);
  }

  /** The RoPE table covering positions 0..P-1 (grown on demand). */
  #ropeTable(P: number): F32 {
    const hs = headSize(this.config);
    if (this.#rope === null || this.#rope.length < P * hs) {
      this.#rope?.free();
      this.#rope = ropeTable(this.k, Math.max(P, this.config.seqLen), hs, this.config.ropeTheta);
    }
    return this.#rope;
  }

  async #layer(l: number, ws: Workspace, hooks: LoraHooks | undefined, mode: Mode): Promise<void> {
    const k = this.k, c = this.config, w = this.#layers[l], a = ws.acts[l], p = this.profile;
    const { B, T } = ws.shape, M = ws.M;
    const D = c.dim, H = c.hiddenDim, hs = headSize(c), NH = c.nHeads, NKV = c.nKvHeads;
    const Dq = NH * hs;
    const active = activeOf(hooks, l);
    if (ws.grad) ws.active[l] = active;
    let t = p ? p.now() : 0;

    // Attention.
    rmsnormForward(k, a.xn1, a.rstd1, a.hIn, w.attnNorm, c.normEps);
    if (p) t = p.lap("rmsnorm.fwd", t);
    w.qkv.forward([a.q, a.k, a.v], a.xn1, M, ws.cat);
    if (p) t = p.lap("gemm.qkv.fwd", t);
    if (active.qkv.length > 0) {
      await hooks!.forward(l, a.xn1, outputsOf(active.qkv, { q: a.q, k: a.k, v: a.v }));
      if (p) t = p.lap("lora.fwd", t);
    }
    const pos0 = mode.kind === "decode" ? mode.pos : 0;
    const table = this.#ropeTable(pos0 + T);
    ropeForward(k, a.q, table, { B, T, NH, hs, pos0, style: this.ropeStyle });
    ropeForward(k, a.k, table, { B, T, NH: NKV, hs, pos0, style: this.ropeStyle });
    if (p) t = p.lap("rope.fwd", t);
    if (mode.kind === "decode") {
      const { cache, pos } = mode, maxT = cache.maxT;
      kvCacheWrite(k, cache.keys[l], a.k, { B, T: 1, NKV, hs, maxT, pos0: pos });
      kvCacheWrite(k, cache.values[l], a.v, { B, T: 1, NKV, hs, maxT, pos0: pos });
      attentionDecode(
        k,
        a.ao,
        a.q,
        cache.keys[l],
        cache.values[l],
        { B, NH, NKV, hs, L: pos + 1, maxT },
        cache.scores,
      );
    } else {
      attentionForward(k, a.ao, a.att!, a.q, a.k, a.v, { B, T, NH, NKV, hs });
      ws.attLayer = l;
      if (mode.kind === "prefill") {
        const { cache } = mode, maxT = cache.maxT;
        kvCacheWrite(k, cache.keys[l], a.k, { B, T, NKV, hs, maxT, pos0: 0 });
        kvCacheWrite(k, cache.values[l], a.v, { B, T, NKV, hs, maxT, pos0: 0 });
      }
    }
    if (p) t = p.lap("attention.fwd", t);
    // hMid = hIn + ao·Woᵀ: the residual is copied in and the product accumulated onto it.
    a.hMid.data.set(a.hIn.data);
    gemmXWt(k, a.hMid, a.ao, w.wo, M, Dq, D, { accumulate: true });
    if (p) t = p.lap("gemm.o.fwd", t);
    if (active.o) {
      await hooks!.forward(l, a.ao, [{ proj: "o", Y: a.hMid }]);
      if (p) t = p.lap("lora.fwd", t);
    }

    // MLP.
    rmsnormForward(k, a.xn2, a.rstd2, a.hMid, w.ffnNorm, c.normEps);
    if (p) t = p.lap("rmsnorm.fwd", t);
    w.gateUp.forward([a.g, a.u], a.xn2, M, ws.cat);
    if (p) t = p.lap("gemm.gateup.fwd", t);
    if (active.gateUp.length > 0) {
      await hooks!.forward(l, a.xn2, outputsOf(active.gateUp, { gate: a.g, up: a.u }));
      if (p) t = p.lap("lora.fwd", t);
    }
    swigluForward(k, a.hm, a.g, a.u);
    if (p) t = p.lap("swiglu.fwd", t);
    a.hOut.data.set(a.hMid.data);
    gemmXWt(k, a.hOut, a.hm, w.down, M, H, D, { accumulate: true });
    if (p) t = p.lap("gemm.down.fwd", t);
    if (active.down) {
      await hooks!.forward(l, a.hm, [{ proj: "down", Y: a.hOut }]);
      if (p) p.lap("lora.fwd", t);
    }
  }

  /**
   * One layer back. `stop` is the group (forward order: GROUP_QKV … GROUP_DOWN) whose hook gets
   * dX = null and after which nothing runs: nothing upstream of it is trained (NO_STOP: none).
   */
  async #layerBackward(
    l: number,
    ws: Workspace,
    hooks: LoraHooks | undefined,
    stop: number,
  ): Promise<void> {
    const k = this.k, c = this.config, w = this.#layers[l], a = ws.acts[l], p = this.profile;
    const g = ws.grads!, active = ws.active[l];
    const { B, T } = ws.shape, M = ws.M;
    const D = c.dim, H = c.hiddenDim, hs = headSize(c), NH = c.nHeads, NKV = c.nKvHeads;
    const Dq = NH * hs;
    if ((active.qkv.length || active.o || active.gateUp.length || active.down) && !hooks) {
      throw new Error(
        `LlamaBlocks.backward: layer ${l} had active LoRA modules in forward; pass the same hooks`,
      );
    }
    let t = p ? p.now() : 0;

    // MLP: g.dres holds ∂L/∂hOut, which is also G of down (hOut = hMid + down(hm)).
    if (stop === GROUP_DOWN) return await hooks!.backward(l, [{ proj: "down", G: g.dres }], null);
    gemmDyW(k, g.dhm, g.dres, w.down, M, D, H);
    if (p) t = p.lap("gemm.down.bwd", t);
    if (active.down) {
      await hooks!.backward(l, [{ proj: "down", G: g.dres }], g.dhm);
      if (p) t = p.lap("lora.bwd", t);
    }
    swigluBackward(k, g.dg, g.du, g.dhm, a.g, a.u);
    if (p) t = p.lap("swiglu.bwd", t);
    if (stop === GROUP_GATE_UP) {
      return await hooks!.backward(l, gradsOf(active.gateUp, { gate: g.dg, up: g.du }), null);
    }
    w.gateUp.backward(g.dxn, [g.dg, g.du], M, ws.cat);
    if (p) t = p.lap("gemm.gateup.bwd", t);
    if (active.gateUp.length > 0) {
      await hooks!.backward(l, gradsOf(active.gateUp, { gate: g.dg, up: g.du }), g.dxn);
      if (p) t = p.lap("lora.bwd", t);
    }
    rmsnormBackward(k, g.dres, null, g.dxn, a.hMid, w.ffnNorm, a.rstd2, { accumulate: true });
    if (p) t = p.lap("rmsnorm.bwd", t);

    // Attention: g.dres now holds ∂L/∂hMid, G of o.
    if (stop === GROUP_O) return await hooks!.backward(l, [{ proj: "o", G: g.dres }], null);
    gemmDyW(k, g.dao, g.dres, w.wo, M, D, Dq);
    if (p) t = p.lap("gemm.o.bwd", t);
    if (active.o) {
      await hooks!.backward(l, [{ proj: "o", G: g.dres }], g.dao);
      if (p) t = p.lap("lora.bwd", t);
    }
    // The shared buffer may hold another layer's probabilities: then the kernel recomputes this
    // layer's from its saved q, k, one head at a time (the forward's arithmetic, the same bits).
    const att = ws.recompute && ws.attLayer !== l ? null : a.att;
    attentionBackward(k, g.dq, g.dk, g.dv, g.dao, a.q, a.k, a.v, att, { B, T, NH, NKV, hs });
    if (p) t = p.lap("attention.bwd", t);
    const table = this.#ropeTable(T);
    ropeBackward(k, g.dq, table, { B, T, NH, hs, style: this.ropeStyle });
    ropeBackward(k, g.dk, table, { B, T, NH: NKV, hs, style: this.ropeStyle });
    if (p) t = p.lap("rope.bwd", t);
    if (stop === GROUP_QKV) {
      return await hooks!.backward(l, gradsOf(active.qkv, { q: g.dq, k: g.dk, v: g.dv }), null);
    }
    w.qkv.backward(g.dxn, [g.dq, g.dk, g.dv], M, ws.cat);
    if (p) t = p.lap("gemm.qkv.bwd", t);
    if (active.qkv.length > 0) {
      await hooks!.backward(l, gradsOf(active.qkv, { q: g.dq, k: g.dk, v: g.dv }), g.dxn);
      if (p) t = p.lap("lora.bwd", t);
    }
    rmsnormBackward(k, g.dres, null, g.dxn, a.hIn, w.attnNorm, a.rstd1, { accumulate: true });
    if (p) p.lap("rmsnorm.bwd", t);
  }
}

const NO_ACTIVE: LayerActive = { qkv: [], o: false, gateUp: [], down: false };

/** A layer's input groups in forward order (PROJ_GROUPS), and "stop nowhere". */
const GROUP_QKV = 0, GROUP_O = 1, GROUP_GATE_UP = 2, GROUP_DOWN = 3, NO_STOP = -1;

/** The first group in forward order with an active module: where a backward may stop. */
export function firstActive(
  active: readonly LayerActive[],
): { layer: number; group: number } | null {
  for (let l = 0; l < active.length; l++) {
    const a = active[l];
    const group = a.qkv.length > 0
      ? GROUP_QKV
      : a.o
      ? GROUP_O
      : a.gateUp.length > 0
      ? GROUP_GATE_UP
      : a.down
      ? GROUP_DOWN
      : NO_STOP;
    if (group !== NO_STOP) return { layer: l, group };
  }
  return null;
}

function activeOf(hooks: LoraHooks | undefined, l: number): LayerActive {
  if (hooks === undefined) return NO_ACTIVE;
  const on = (p: Proj) => hooks.isActive(l, p);
  return {
    qkv: (["q", "k", "v"] as const).filter(on),
    o: on("o"),
    gateUp: (["gate", "up"] as const).filter(on),
    down: on("down"),
  };
}

function outputsOf(projs: readonly Proj[], bufs: Partial<Record<Proj, F32>>): ProjOutput[] {
  return projs.map((proj) => ({ proj, Y: bufs[proj]! }));
}

function gradsOf(projs: readonly Proj[], bufs: Partial<Record<Proj, F32>>): ProjGrad[] {
  return projs.map((proj) => ({ proj, G: bufs[proj]! }));
}
