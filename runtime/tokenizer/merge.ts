/**
 * The merge loop every BPE variant shares: repeatedly replace the adjacent pair with the highest
 * priority by its merged token, the leftmost pair on ties, until no pair merges. SentencePiece
 * (llama2.c, llama.cpp SPM) ranks a pair by the score of the merged piece; GPT-2 and Hugging Face
 * BPE by the merge's rank (priority = -rank). Done with a binary heap over a linked list of
 * symbols, O(n log n), so a 1 MB book encodes in one pass as llama2.c does it in O(n²).
 */

/**
 * (left id, right id) → merged id and priority, in an open-addressing hash table on typed arrays
 * (the merge loop looks pairs up millions of times per book; a Map of numbers is slower).
 */
export class PairTable {
  private keysLeft = new Int32Array(64).fill(-1);
  private keysRight = new Int32Array(64);
  private slots = new Int32Array(64);
  private mask = 63;
  private readonly mergedIds: number[] = [];
  private readonly priorities: number[] = [];

  private static hash(left: number, right: number): number {
    return (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca6b)) >>> 0;
  }

  /** First definition of a pair wins (as a merges list read top to bottom). */
  add(left: number, right: number, merged: number, priority: number): void {
    if (left < 0 || right < 0) throw new RangeError(`pair (${left}, ${right}): ids must be ≥ 0`);
    if (this.find(left, right) >= 0) return;
    if ((this.mergedIds.length + 1) * 2 > this.mask + 1) this.rehash((this.mask + 1) * 2);
    this.insert(left, right, this.mergedIds.length);
    this.mergedIds.push(merged);
    this.priorities.push(priority);
  }

  private insert(left: number, right: number, slot: number): void {
    let h = PairTable.hash(left, right) & this.mask;
    while (this.keysLeft[h] >= 0) h = (h + 1) & this.mask;
    this.keysLeft[h] = left;
    this.keysRight[h] = right;
    this.slots[h] = slot;
  }

  private rehash(capacity: number): void {
    const { keysLeft, keysRight, slots } = this;
    this.keysLeft = new Int32Array(capacity).fill(-1);
    this.keysRight = new Int32Array(capacity);
    this.slots = new Int32Array(capacity);
    this.mask = capacity - 1;
    for (let i = 0; i < keysLeft.length; i++) {
      if (keysLeft[i] >= 0) this.insert(keysLeft[i], keysRight[i], slots[i]);
    }
  }

  /** Index of the pair, or -1. */
  find(left: number, right: number): number {
    if (left < 0 || right < 0) return -1;
    const kl = this.keysLeft, kr = this.keysRight, mask = this.mask;
    for (let h = PairTable.hash(left, right) & mask;; h = (h + 1) & mask) {
      const l = kl[h];
      if (l < 0) return -1;
      if (l === left && kr[h] === right) return this.slots[h];
    }
  }

  merged(pair: number): number {
    return this.mergedIds[pair];
  }

  priority(pair: number): number {
    return this.priorities[pair];
  }

  get size(): number {
    return this.mergedIds.length;
  }
}

/** Candidate merges, a max-heap on (priority, -left position), stored as parallel arrays. */
class PairHeap {
  prio: Float64Array;
  left: Int32Array;
  right: Int32Array;
  leftId: Int32Array;
  rightId: Int32Array;
  merged: Int32Array;
  size = 0;

  constructor(capacity: number) {
    capacity = Math.max(16, capacity);
    this.prio = new Float64Array(capacity);
    this.left = new Int32Array(capacity);
    this.right = new Int32Array(capacity);
    this.leftId = new Int32Array(capacity);
    this.rightId = new Int32Array(capacity);
    this.merged = new Int32Array(capacity);
  }

  private grow(): void {
    const n = this.prio.length * 2;
    const g = <T extends Float64Array | Int32Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.prio = g(this.prio, (n) => new Float64Array(n));
    this.left = g(this.left, (n) => new Int32Array(n));
    this.right = g(this.right, (n) => new Int32Array(n));
    this.leftId = g(this.leftId, (n) => new Int32Array(n));
    this.rightId = g(this.rightId, (n) => new Int32Array(n));
    this.merged = g(this.merged, (n) => new Int32Array(n));
  }

  push(prio: number, left: number, right: number, leftId: number, rightId: number, merged: number) {
    if (this.size === this.prio.length) this.grow();
    const P = this.prio, L = this.left;
    let i = this.size++;
    // Sift up with a hole: move parents down until the new entry fits.
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pp = P[p];
      if (pp > prio || (pp === prio && L[p] < left)) break;
      this.move(p, i);
      i = p;
    }
    P[i] = prio;
    L[i] = left;
    this.right[i] = right;
    this.leftId[i] = leftId;
    this.rightId[i] = rightId;
    this.merged[i] = merged;
  }

  /** Adds an entry without ordering; call `heapify()` before the first pop. */
  append(
    prio: number,
    left: number,
    right: number,
    leftId: number,
    rightId: number,
    merged: number,
  ) {
    if (this.size === this.prio.length) this.grow();
    const i = this.size++;
    this.prio[i] = prio;
    this.left[i] = left;
    this.right[i] = right;
    this.leftId[i] = leftId;
    this.rightId[i] = rightId;
    this.merged[i] = merged;
  }

  /** Floyd's bottom-up heap construction, O(n). */
  heapify(): void {
    for (let i = (this.size >> 1) - 1; i >= 0; i--) this.siftDown(i, this.size);
  }

  private siftDown(i: number, n: number): void {
    const P = this.prio, L = this.left;
    const prio = P[i], left = L[i];
    const right = this.right[i], leftId = this.leftId[i], rightId = this.rightId[i];
    const merged = this.merged[i];
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      const r = c + 1;
      if (r < n && (P[r] > P[c] || (P[r] === P[c] && L[r] < L[c]))) c = r;
      if (prio > P[c] || (prio === P[c] && left < L[c])) break;
      this.move(c, i);
      i = c;
    }
    P[i] = prio;
    L[i] = left;
    this.right[i] = right;
    this.leftId[i] = leftId;
    this.rightId[i] = rightId;
    this.merged[i] = merged;
  }

  /** Fields of the entry the last pop() removed. */
  topLeft = 0;
  topRight = 0;
  topLeftId = 0;
  topRightId = 0;
  topMerged = 0;

  /** Removes the top entry; its fields are copied to `top*` first. */
  pop(): void {
    this.topLeft = this.left[0];
    this.topRight = this.right[0];
    this.topLeftId = this.leftId[0];
    this.topRightId = this.rightId[0];
    this.topMerged = this.merged[0];
    const n = --this.size;
    if (n === 0) return;
    this.move(n, 0);
    this.siftDown(0, n);
  }

  private move(from: number, to: number): void {
    this.prio[to] = this.prio[from];
    this.left[to] = this.left[from];
    this.right[to] = this.right[from];
    this.leftId[to] = this.leftId[from];
    this.rightId[to] = this.rightId[from];
    this.merged[to] = this.merged[from];
  }
}

/**
 * Merges `ids[0..n)` in place and returns the new length. Ids < 0 (symbols outside the
 * vocabulary) never merge. Only pairs with priority > `minPriority` are considered (llama2.c
 * starts its search at -1e10).
 */
export function mergeGreedy(
  ids: Int32Array,
  n: number,
  table: PairTable,
  minPriority = -Infinity,
): number {
  if (n < 2) return n;
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap(n);
  for (let i = 0; i + 1 < n; i++) {
    const pair = table.find(ids[i], ids[i + 1]);
    if (pair < 0) continue;
    const p = table.priority(pair);
    if (p > minPriority) heap.append(p, i, i + 1, ids[i], ids[i + 1], table.merged(pair));
  }
  heap.heapify();
  const consider = (l: number, r: number) => {
    if (l < 0 || r < 0) return;
    const pair = table.find(ids[l], ids[r]);
    if (pair < 0) return;
    const p = table.priority(pair);
    if (p > minPriority) heap.push(p, l, r, ids[l], ids[r], table.merged(pair));
  };
  while (heap.size > 0) {
    heap.pop();
    const l = heap.topLeft, r = heap.topRight;
    // Stale entries: one side already merged into something else.
    if (next[l] !== r || ids[l] !== heap.topLeftId || ids[r] !== heap.topRightId) continue;
    ids[l] = heap.topMerged;
    ids[r] = -2; // removed
    const rn = next[r];
    next[l] = rn;
    if (rn >= 0) prev[rn] = l;
    consider(prev[l], l);
    consider(l, rn);
  }
  let m = 0;
  for (let i = 0; i >= 0; i = next[i]) ids[m++] = ids[i];
  return m;
}
