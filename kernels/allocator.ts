/**
 * First-fit free-list allocator over a range of wasm linear memory. Pure
 * bookkeeping (no memory access), so it is testable on its own. Blocks are
 * aligned to `ALIGN` bytes so SIMD loads never straddle cache lines.
 */
export const ALIGN = 64;

interface Block {
  start: number;
  size: number;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export class Allocator {
  /** Free blocks sorted by start address, never adjacent (coalesced). */
  #free: Block[] = [];
  /** Live allocations: start → size. */
  #live = new Map<number, number>();
  #end: number;

  /**
   * @param base first usable byte
   * @param end one past the last usable byte
   * @param grow called with the bytes still needed when no block fits; it
   *   returns the new `end` (or throws when memory cannot grow).
   */
  constructor(base: number, end: number, private grow: (needed: number) => number) {
    const start = alignUp(base, ALIGN);
    this.#end = end;
    if (end > start) this.#free.push({ start, size: end - start });
  }

  get liveBytes(): number {
    let n = 0;
    for (const s of this.#live.values()) n += s;
    return n;
  }

  get liveCount(): number {
    return this.#live.size;
  }

  alloc(bytes: number): number {
    if (!Number.isInteger(bytes) || bytes < 0) {
      throw new RangeError(`allocation size must be a non-negative integer, got ${bytes}`);
    }
    const size = alignUp(Math.max(bytes, 1), ALIGN);
    let i = this.#free.findIndex((b) => b.size >= size);
    if (i < 0) {
      this.#extend(size);
      i = this.#free.findIndex((b) => b.size >= size);
      if (i < 0) throw new RangeError(`out of wasm memory: cannot place ${bytes} bytes`);
    }
    const block = this.#free[i];
    const ptr = block.start;
    if (block.size === size) this.#free.splice(i, 1);
    else {
      block.start += size;
      block.size -= size;
    }
    this.#live.set(ptr, size);
    return ptr;
  }

  free(ptr: number): void {
    const size = this.#live.get(ptr);
    if (size === undefined) throw new Error(`free of unknown pointer ${ptr} (double free?)`);
    this.#live.delete(ptr);
    this.#insertFree(ptr, size);
  }

  sizeOf(ptr: number): number | undefined {
    return this.#live.get(ptr);
  }

  #insertFree(start: number, size: number): void {
    const free = this.#free;
    let i = 0;
    while (i < free.length && free[i].start < start) i++;
    free.splice(i, 0, { start, size });
    // Coalesce with the next, then with the previous block.
    if (i + 1 < free.length && start + size === free[i + 1].start) {
      free[i].size += free[i + 1].size;
      free.splice(i + 1, 1);
    }
    if (i > 0 && free[i - 1].start + free[i - 1].size === start) {
      free[i - 1].size += free[i].size;
      free.splice(i, 1);
    }
  }

  #extend(size: number): void {
    const last = this.#free[this.#free.length - 1];
    const tailFree = last && last.start + last.size === this.#end ? last.size : 0;
    const oldEnd = this.#end;
    const newEnd = this.grow(size - tailFree);
    if (newEnd <= oldEnd) return;
    this.#end = newEnd;
    this.#insertFree(oldEnd, newEnd - oldEnd);
  }
}
