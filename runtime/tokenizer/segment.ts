/**
 * Exact speed-up for merging a whole book as one sequence (llama2.c and SentencePiece do not cut
 * text into words). A merge can only ever join adjacent symbols a and b if some vocabulary token
 * contains a+b, so where no token does, the sequence splits into segments that merge
 * independently: the greedy order restricted to one segment is that segment's own greedy order.
 * Segments (mostly words) repeat, so their results are cached.
 */
import { mergeGreedy, PairTable } from "./merge.ts";

const CACHE_LIMIT = 200_000;
const CACHE_MAX_SYMBOLS = 64;

function isOneCodePoint(s: string): boolean {
  return s.length === 1 || (s.length === 2 && s.codePointAt(0)! > 0xffff);
}

export class SegmentedMerger {
  /** Adjacent single-character tokens that occur together inside some token. */
  private readonly charBigrams = new PairTable();
  private readonly isChar: Uint8Array;
  /** For other ids: whether the token's text occurs inside another token (else it never joins). */
  private readonly containedElsewhere = new Map<number, boolean>();
  private readonly memo = new Map<string, boolean>();
  private readonly cache = new Map<string, Int32Array>();

  /** `tokens[id]` is the text merges concatenate (for llama2.c, byte tokens read "<0xC3>"). */
  constructor(
    private readonly tokens: readonly string[],
    private readonly ids: ReadonlyMap<string, number>,
    private readonly table: PairTable,
    private readonly minPriority = -Infinity,
  ) {
    this.isChar = new Uint8Array(tokens.length);
    tokens.forEach((t, i) => {
      if (isOneCodePoint(t) && ids.get(t) === i) this.isChar[i] = 1;
    });
    for (const t of tokens) {
      let prev: number | undefined;
      for (const ch of t) {
        const id = ids.get(ch);
        if (prev !== undefined && id !== undefined) this.charBigrams.add(prev, id, 0, 0);
        prev = id;
      }
    }
  }

  /** Whether a merge could ever join symbol `a` to symbol `b` on its right. */
  private mayJoin(a: number, b: number): boolean {
    if (a < 0 || b < 0) return false; // outside the vocabulary: never merges
    if (this.isChar[a] && this.isChar[b]) return this.charBigrams.find(a, b) >= 0;
    if (!this.inOtherToken(a) || !this.inOtherToken(b)) return false;
    const joined = this.tokens[a] + this.tokens[b];
    let m = this.memo.get(joined);
    if (m === undefined) {
      m = this.tokens.some((t) => t.includes(joined));
      this.memo.set(joined, m);
    }
    return m;
  }

  private inOtherToken(id: number): boolean {
    if (this.isChar[id]) return true;
    let c = this.containedElsewhere.get(id);
    if (c === undefined) {
      const t = this.tokens[id];
      c = this.tokens.some((u, j) => j !== id && u.includes(t));
      this.containedElsewhere.set(id, c);
    }
    return c;
  }

  /** Merges `ids[0..n)` in place, segment by segment; returns the new length. */
  merge(ids: Int32Array, n: number): number {
    let m = 0, start = 0;
    for (let i = 1; i <= n; i++) {
      if (i < n && this.mayJoin(ids[i - 1], ids[i])) continue;
      m = this.mergeSegment(ids, start, i, m);
      start = i;
    }
    return m;
  }

  /** Merges ids[start..end) and writes the result at ids[to..]; returns the new write index. */
  private mergeSegment(ids: Int32Array, start: number, end: number, to: number): number {
    const len = end - start;
    if (len === 1) {
      ids[to] = ids[start];
      return to + 1;
    }
    let key: string | undefined;
    if (len <= CACHE_MAX_SYMBOLS) {
      key = "";
      for (let i = start; i < end; i++) {
        const id = ids[i];
        key += id < 0xffff
          ? String.fromCharCode(id)
          : "\uffff" + String.fromCharCode(id >>> 16, id & 0xffff);
      }
      const hit = this.cache.get(key);
      if (hit) {
        ids.set(hit, to);
        return to + hit.length;
      }
    }
    const seg = ids.slice(start, end);
    const k = mergeGreedy(seg, len, this.table, this.minPriority);
    const result = seg.subarray(0, k);
    if (key !== undefined) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(key, result.slice());
    }
    ids.set(result, to);
    return to + k;
  }
}
