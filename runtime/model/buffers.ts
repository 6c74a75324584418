/**
 * Wasm-memory bookkeeping shared by the engine's parts: workspaces kept per batch shape, and
 * strided row copies that allocate nothing (fused projections are split and joined with them).
 */
import type { F32, Kernels } from "../../kernels/mod.ts";

/** Anything holding wasm allocations. */
export interface Freeable {
  free(): void;
}

/**
 * Workspaces keyed by shape, built on first use and reused; beyond `capacity` the least recently
 * used one is freed (training, evaluation and generation each keep theirs without thrashing).
 */
export class ShapeCache<W extends Freeable> {
  #entries = new Map<string, W>();

  /** `pinned` entries (e.g. one a pending backward needs) are never the ones freed. */
  constructor(
    private readonly capacity = 3,
    private readonly pinned: (w: W) => boolean = () => false,
  ) {}

  get(key: string, build: () => W): W {
    let w = this.#entries.get(key);
    if (w !== undefined) {
      // Re-insert: Map keeps insertion order, so the first key is the least recently used.
      this.#entries.delete(key);
      this.#entries.set(key, w);
      return w;
    }
    w = build();
    this.#entries.set(key, w);
    for (const [oldKey, old] of this.#entries) {
      if (this.#entries.size <= this.capacity) break;
      if (old === w || this.pinned(old)) continue;
      this.#entries.delete(oldKey);
      old.free();
    }
    return w;
  }

  clear(): void {
    for (const w of this.#entries.values()) w.free();
    this.#entries.clear();
  }
}

/** Allocations made through `take` are freed together. */
export class Arena implements Freeable {
  #owned: F32[] = [];

  constructor(readonly k: Kernels) {}

  take(shape: readonly number[]): F32 {
    const a = this.k.alloc(shape);
    this.#owned.push(a);
    return a;
  }

  /** An allocation filled with zeros. */
  zeros(shape: readonly number[]): F32 {
    const a = this.take(shape);
    a.data.fill(0);
    return a;
  }

  free(): void {
    for (const a of this.#owned) a.free();
    this.#owned = [];
  }
}

const views = new WeakMap<Kernels, Float32Array>();

/** A Float32Array over all of `k`'s memory, re-made after growth. */
function memoryF32(k: Kernels): Float32Array {
  const buffer = k.memory.buffer;
  let v = views.get(k);
  if (v === undefined || v.buffer !== buffer) {
    v = new Float32Array(buffer);
    views.set(k, v);
  }
  return v;
}

/**
 * Copies `rows` rows of `width` floats: row i of `src` (stride `srcStride`, starting at column
 * `srcCol`) to row i of `dst` (stride `dstStride`, column `dstCol`). No allocation.
 */
export function copyRows(
  k: Kernels,
  dst: F32,
  dstStride: number,
  dstCol: number,
  src: F32,
  srcStride: number,
  srcCol: number,
  rows: number,
  width: number,
): void {
  if (width === dstStride && width === srcStride && dstCol === 0 && srcCol === 0) {
    dst.data.set(src.data.subarray(0, rows * width));
    return;
  }
  const mem = memoryF32(k);
  let s = src.ptr / 4 + srcCol, d = dst.ptr / 4 + dstCol;
  for (let i = 0; i < rows; i++, s += srcStride, d += dstStride) mem.copyWithin(d, s, s + width);
}
