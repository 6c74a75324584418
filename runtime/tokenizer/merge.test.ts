import { assert } from "../../tests/util.ts";
import { rng } from "../../tests/util.ts";
import { mergeGreedy, PairTable } from "./merge.ts";

/** The definition: scan for the best pair (highest priority, leftmost), merge, repeat. */
function naiveMerge(ids: number[], table: PairTable, minPriority: number): number[] {
  const seq = ids.slice();
  for (;;) {
    let best = -1, bestPrio = minPriority;
    for (let i = 0; i + 1 < seq.length; i++) {
      const p = table.find(seq[i], seq[i + 1]);
      if (p >= 0 && table.priority(p) > bestPrio) {
        best = i;
        bestPrio = table.priority(p);
      }
    }
    if (best < 0) return seq;
    seq.splice(best, 2, table.merged(table.find(seq[best], seq[best + 1])));
  }
}

Deno.test("merge: heap merging equals the naive greedy scan, ties included", () => {
  const r = rng(7);
  for (let trial = 0; trial < 300; trial++) {
    const V = 3 + Math.floor(r() * 12);
    const table = new PairTable();
    const pairs = Math.floor(r() * V * 2);
    // Few distinct priorities so ties are common.
    for (let k = 0; k < pairs; k++) {
      table.add(
        Math.floor(r() * V),
        Math.floor(r() * V),
        Math.floor(r() * V),
        Math.floor(r() * 4) - 2,
      );
    }
    const n = Math.floor(r() * 40);
    const ids = Array.from({ length: n }, () => (r() < 0.1 ? -5 : Math.floor(r() * V)));
    const minPriority = trial % 2 ? -Infinity : -1;
    const want = naiveMerge(ids, table, minPriority);
    const buf = Int32Array.from(ids);
    const got = Array.from(buf.subarray(0, mergeGreedy(buf, n, table, minPriority)));
    assert(
      JSON.stringify(got) === JSON.stringify(want),
      `trial ${trial}: ids ${ids} → heap ${got}, naive ${want}`,
    );
  }
});
