/** What the benchmark needs from a peer GEMM implementation. */

/** One problem size, set up once: inputs already live in the peer's own tensors. */
export interface PreparedGemm {
  /** The timed region: one Y = X·W whose result the caller can read afterwards. */
  run(): unknown;
  /** Where the output stays in the peer's heap: `run()` plus the copy out to a JS array. */
  runWithReadback?(): unknown;
  /** One more product, copied out for the numeric check (not timed). */
  output(): Float32Array | Promise<Float32Array>;
  dispose(): void | Promise<void>;
}

export interface GemmPeer {
  name: "tfjs-wasm" | "ort-web";
  threads: number;
  /** Which build ran, e.g. "tfjs-backend-wasm-simd.wasm". */
  binary: string;
  /** Which product the peer computes and how W is laid out. */
  layout: string;
  /** Exactly what `run()` contains. */
  timedRegion: string;
  /** X is M×K row-major, W is K×N row-major (the peers' natural MatMul layout). */
  prepare(X: Float32Array, W: Float32Array, M: number, K: number, N: number): Promise<PreparedGemm>;
}
