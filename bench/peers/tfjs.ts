/**
 * Peer: TensorFlow.js WebAssembly backend (XNNPACK). Under Deno, tfjs-core
 * detects a Node-like host (`process` exists), where tfjs-backend-wasm turns
 * threads off, so the SIMD single-thread binary runs. The .wasm file is read
 * from node_modules through the platform fetch (a file URL), never the network.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as tfwasm from "@tensorflow/tfjs-backend-wasm";
import type { GemmPeer, PreparedGemm } from "./types.ts";

const DIST = new URL("../../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url);
const BINARIES = [
  "tfjs-backend-wasm.wasm",
  "tfjs-backend-wasm-simd.wasm",
  "tfjs-backend-wasm-threaded-simd.wasm",
] as const;

let loaded: Promise<string> | null = null;

/** Registers and selects the wasm backend once; resolves to the binary that was fetched. */
function initBackend(): Promise<string> {
  loaded ??= (async () => {
    const files: Record<string, string> = {};
    for (const b of BINARIES) files[b] = new URL(b, DIST).href;
    // `true`: load through tfjs' platform fetch, which we watch to learn the binary.
    tfwasm.setWasmPaths(files, true);
    const fetched: string[] = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
      const url = input instanceof Request ? input.url : String(input);
      fetched.push(url);
      return realFetch(input, init);
    };
    try {
      if (!(await tf.setBackend("wasm"))) {
        throw new Error(`tfjs-backend-wasm failed to initialise from ${DIST.pathname}`);
      }
      await tf.ready();
    } finally {
      globalThis.fetch = realFetch;
    }
    const binary = fetched.map((u) => u.slice(u.lastIndexOf("/") + 1)).find((u) =>
      u.endsWith(".wasm")
    );
    return binary ?? "unknown";
  })();
  return loaded;
}

/**
 * tfjs-backend-wasm as a GEMM peer, single thread. The product is the plain
 * `tf.matMul(X, W)` with W stored K×N: its transposeB path is several times
 * slower in this build, so the untransposed one is the fair choice.
 */
export async function loadTfjsPeer(): Promise<GemmPeer> {
  const binary = await initBackend();
  const threads = tfwasm.getThreadsCount();
  return {
    name: "tfjs-wasm",
    threads,
    binary: `tfjs-backend-wasm ${tfwasm.version_wasm} ${binary} (XNNPACK)`,
    layout: "tf.matMul(X, W): Y = X·W, W stored K×N",
    timedRegion: "tf.matMul(X, W) then dispose of the previous output: Y is left as a " +
      "tfjs tensor in the backend's wasm heap, like ours (dataSync, a copy out, is timed " +
      "separately as 'with readback')",
    prepare(X, W, M, K, N): Promise<PreparedGemm> {
      const x = tf.tensor2d(X, [M, K]);
      const w = tf.tensor2d(W, [K, N]);
      let y: tf.Tensor | null = null;
      const prepared: PreparedGemm = {
        run() {
          y?.dispose();
          y = tf.matMul(x, w);
          return y;
        },
        runWithReadback() {
          y?.dispose();
          y = tf.matMul(x, w);
          return y.dataSync() as Float32Array;
        },
        output() {
          const out = tf.matMul(x, w);
          const data = out.dataSync() as Float32Array;
          out.dispose();
          return data.slice();
        },
        dispose() {
          y?.dispose();
          x.dispose();
          w.dispose();
        },
      };
      return Promise.resolve(prepared);
    },
  };
}
