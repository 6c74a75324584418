/** Plain-loop LoRA references (f64), used only by tests. Row-major; names as in kernels/lora.ts. */
type Arr = ArrayLike<number>;

/** XA (M,R) = X·Aᵀ and ΔY (M,OUT) = s·XA·Bᵀ for X (M,IN), A (R,IN), B (OUT,R). */
export function loraForwardRef(
  X: Arr,
  A: Arr,
  B: Arr,
  M: number,
  IN: number,
  R: number,
  OUT: number,
  scale: number,
): { XA: Float64Array; dY: Float64Array } {
  const XA = new Float64Array(M * R), dY = new Float64Array(M * OUT);
  for (let m = 0; m < M; m++) {
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let i = 0; i < IN; i++) s += X[m * IN + i] * A[r * IN + i];
      XA[m * R + r] = s;
    }
    for (let o = 0; o < OUT; o++) {
      let s = 0;
      for (let r = 0; r < R; r++) s += XA[m * R + r] * B[o * R + r];
      dY[m * OUT + o] = scale * s;
    }
  }
  return { XA, dY };
}

/**
 * Given G = ∂L/∂ΔY (M,OUT): dB (OUT,R) = s·Gᵀ·XA, dA (R,IN) = s·(G·B)ᵀ·X,
 * dX (M,IN) = s·(G·B)·A, with XA = X·Aᵀ recomputed here.
 */
export function loraBackwardRef(
  G: Arr,
  X: Arr,
  A: Arr,
  B: Arr,
  M: number,
  IN: number,
  R: number,
  OUT: number,
  scale: number,
): { dX: Float64Array; dA: Float64Array; dB: Float64Array } {
  const { XA } = loraForwardRef(X, A, B, M, IN, R, OUT, scale);
  const GB = new Float64Array(M * R);
  for (let m = 0; m < M; m++) {
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let o = 0; o < OUT; o++) s += G[m * OUT + o] * B[o * R + r];
      GB[m * R + r] = scale * s;
    }
  }
  const dB = new Float64Array(OUT * R),
    dA = new Float64Array(R * IN),
    dX = new Float64Array(M * IN);
  for (let m = 0; m < M; m++) {
    for (let o = 0; o < OUT; o++) {
      for (let r = 0; r < R; r++) dB[o * R + r] += scale * G[m * OUT + o] * XA[m * R + r];
    }
    for (let r = 0; r < R; r++) {
      for (let i = 0; i < IN; i++) {
        dA[r * IN + i] += GB[m * R + r] * X[m * IN + i];
        dX[m * IN + i] += GB[m * R + r] * A[r * IN + i];
      }
    }
  }
  return { dX, dA, dB };
}
