/** Plain-loop embedding reference (f64), used only by tests. table (V,C), ids (N). */
type Arr = ArrayLike<number>;

export function embeddingForwardRef(table: Arr, ids: Arr, C: number): Float64Array {
  const out = new Float64Array(ids.length * C);
  for (let r = 0; r < ids.length; r++) {
    for (let i = 0; i < C; i++) out[r * C + i] = table[ids[r] * C + i];
  }
  return out;
}

/** dtable (V,C) = Σ over positions of dout rows at their ids. */
export function embeddingBackwardRef(dout: Arr, ids: Arr, V: number, C: number): Float64Array {
  const dtable = new Float64Array(V * C);
  for (let r = 0; r < ids.length; r++) {
    for (let i = 0; i < C; i++) dtable[ids[r] * C + i] += dout[r * C + i];
  }
  return dtable;
}
