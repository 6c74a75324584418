/**
 * Peer: onnxruntime-web, plain WebAssembly execution provider (no JSEP/WebGPU,
 * no proxy worker). A one-node ONNX model (MatMul, Y = X·W with W stored K×N)
 * is encoded by hand below, so no ONNX tooling is needed.
 */
import * as ort from "onnxruntime-web/wasm";
import type { GemmPeer, PreparedGemm } from "./types.ts";

// ---------------------------------------------------------------------------
// A minimal protobuf writer: just the wire types ONNX models need here
// (varint = 0, length-delimited = 2). Field numbers follow onnx.proto.

const enc = new TextEncoder();

class ProtoWriter {
  #bytes: number[] = [];

  #varint(v: number): void {
    // Values here are non-negative and < 2^53, so plain arithmetic is exact.
    while (v >= 0x80) {
      this.#bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.#bytes.push(v);
  }

  #tag(field: number, wireType: 0 | 2): void {
    this.#varint(field * 8 + wireType);
  }

  int(field: number, value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`protobuf: field ${field} needs a non-negative integer, got ${value}`);
    }
    this.#tag(field, 0);
    this.#varint(value);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, 2);
    this.#varint(value.length);
    for (const b of value) this.#bytes.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, enc.encode(value));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

const ONNX_FLOAT = 1; // TensorProto.DataType.FLOAT

/** ValueInfoProto{name, type: TypeProto{tensor_type: {elem_type: FLOAT, shape}}}. */
function floatValueInfo(w: ProtoWriter, name: string, dims: readonly number[]): void {
  w.string(1, name).message(
    2,
    (type) =>
      type.message(1, (tensor) =>
        tensor.int(1, ONNX_FLOAT).message(2, (shape) => {
          for (const d of dims) shape.message(1, (dim) => dim.int(1, d));
        })),
  );
}

/**
 * ModelProto bytes for one MatMul node: inputs X (M×K) and W (K×N), output
 * Y (M×N). IR version 8, default-domain opset 17.
 */
export function matMulModel(M: number, K: number, N: number): Uint8Array {
  return new ProtoWriter()
    .int(1, 8) // ir_version
    .string(2, "dlora-bench") // producer_name
    .message(7, (graph) => {
      graph.message(
        1,
        (node) =>
          node.string(1, "X").string(1, "W").string(2, "Y").string(3, "matmul").string(
            4,
            "MatMul",
          ),
      );
      graph.string(2, "gemm");
      graph.message(11, (v) => floatValueInfo(v, "X", [M, K]));
      graph.message(11, (v) => floatValueInfo(v, "W", [K, N]));
      graph.message(12, (v) => floatValueInfo(v, "Y", [M, N]));
    })
    .message(8, (opset) => opset.string(1, "").int(2, 17)) // opset_import
    .finish();
}

// ---------------------------------------------------------------------------

const DIST = new URL("../../node_modules/onnxruntime-web/dist/", import.meta.url);
/** The one wasm binary ORT 1.30 ships for the plain wasm EP (threads are optional at runtime). */
export const ORT_WASM_FILE = "ort-wasm-simd-threaded.wasm";

let configuredThreads: number | null = null;

/**
 * onnxruntime-web as a GEMM peer. Its wasm runtime is initialised once per
 * process, so the thread count is fixed by the first call; asking for a
 * different count later throws.
 */
export async function loadOrtPeer(threads = 1): Promise<GemmPeer> {
  if (configuredThreads !== null && configuredThreads !== threads) {
    throw new Error(
      `ort-web is already initialised with ${configuredThreads} thread(s); ` +
        `it cannot switch to ${threads} in the same process`,
    );
  }
  if (configuredThreads === null) {
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.proxy = false;
    ort.env.wasm.simd = true;
    // Bytes handed over directly: no fetch of file URLs, no network.
    const fs = await import("node:fs/promises");
    const wasm = await fs.readFile(new URL(ORT_WASM_FILE, DIST));
    ort.env.wasm.wasmBinary = new Uint8Array(wasm);
    ort.env.logLevel = "error";
    configuredThreads = threads;
  }
  return {
    name: "ort-web",
    threads,
    binary: `onnxruntime-web ${ort.env.versions.web} ${ORT_WASM_FILE} (wasm EP, proxy off)`,
    layout: "MatMul: Y = X·W, W stored K×N (both session inputs)",
    timedRegion: "session.run({X, W}): copies X and W into ORT's wasm heap, " +
      "runs MatMul, returns Y as a CPU ort.Tensor (copied out of the heap)",
    async prepare(X, W, M, K, N): Promise<PreparedGemm> {
      const session = await ort.InferenceSession.create(matMulModel(M, K, N), {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: "sequential",
      });
      const feeds = {
        X: new ort.Tensor("float32", X, [M, K]),
        W: new ort.Tensor("float32", W, [K, N]),
      };
      const runOnce = async (): Promise<Float32Array> => {
        const out = await session.run(feeds);
        return out.Y.data as Float32Array;
      };
      return {
        run: runOnce,
        output: runOnce,
        dispose: () => session.release(),
      };
    },
  };
}
