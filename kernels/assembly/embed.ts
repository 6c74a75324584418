// Token embedding: a row gather from the table, and its backward scatter-add
// (rarely used: embeddings are frozen in LoRA training).
/**
 * ids is (B,T) int32, table is (V,C); out is (B,T,C) = table[ids].
 * An id outside [0,V) gives a zero row (the host rejects such ids first).
 */
export function embedding_forward(out: usize, ids: usize, table: usize, N: i32, C: i32, V: i32): void {
  const rowBytes = <usize>C << 2;
  for (let r = 0; r < N; r++) {
    const id = load<i32>(ids + (<usize>r << 2));
    const dst = out + <usize>r * rowBytes;
    if (id < 0 || id >= V) memory.fill(dst, 0, rowBytes);
    else memory.copy(dst, table + <usize>id * rowBytes, rowBytes);
  }
}

/**
 * dout is (B,T,C), ids (B,T) int32; dtable (V,C) += the rows of dout at their
 * ids (repeated ids add up). Ids outside [0,V) are skipped.
 */
export function embedding_backward(dtable: usize, dout: usize, ids: usize, N: i32, C: i32, V: i32): void {
  const rowBytes = <usize>C << 2;
  for (let r = 0; r < N; r++) {
    const id = load<i32>(ids + (<usize>r << 2));
    if (id < 0 || id >= V) continue;
    const src = dout + <usize>r * rowBytes, dst = dtable + <usize>id * rowBytes;
    let i = 0;
    for (; i + 4 <= C; i += 4) {
      const o = <usize>i << 2;
      v128.store(dst + o, f32x4.add(v128.load(dst + o), v128.load(src + o)));
    }
    for (; i < C; i++) {
      const o = <usize>i << 2;
      store<f32>(dst + o, load<f32>(dst + o) + load<f32>(src + o));
    }
  }
}
