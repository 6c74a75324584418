/** Plain-loop GEMM references (f64 sums), used only by tests. Row-major. */
type Arr = ArrayLike<number>;

/** Y (M,N) = X·Wᵀ with X (M,K), W (N,K). */
export function gemmXWtRef(X: Arr, W: Arr, M: number, K: number, N: number): Float64Array {
  const Y = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let p = 0; p < K; p++) s += X[i * K + p] * W[j * K + p];
      Y[i * N + j] = s;
    }
  }
  return Y;
}

/** dX (M,K) = dY·W with dY (M,N), W (N,K). */
export function gemmDyWRef(dY: Arr, W: Arr, M: number, N: number, K: number): Float64Array {
  const dX = new Float64Array(M * K);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < K; j++) {
      let s = 0;
      for (let p = 0; p < N; p++) s += dY[i * N + p] * W[p * K + j];
      dX[i * K + j] = s;
    }
  }
  return dX;
}

/** dW (N,K) = dYᵀ·X with dY (M,N), X (M,K). */
export function gemmDyTXRef(dY: Arr, X: Arr, M: number, N: number, K: number): Float64Array {
  const dW = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < K; j++) {
      let s = 0;
      for (let m = 0; m < M; m++) s += dY[m * N + n] * X[m * K + j];
      dW[n * K + j] = s;
    }
  }
  return dW;
}
