/**
 * Kernel benchmark: our WebAssembly GEMM against two peers on the same inputs,
 * in one process, plus the throughput of our gradient codecs.
 *
 *   deno task bench:kernels [--json] [--smoke] [--only gemm|codec]
 *
 * What each timed region contains (the table repeats it):
 * - ours: `gemmXWt(k, Y, X, W, M, K, N)`, Y = X·Wᵀ with W stored N×K (the
 *   linear-layer layout). X, W and Y are `k.alloc` arrays already in wasm
 *   memory; afterwards Y is readable in place through `Y.data` (no copy).
 * - tfjs-wasm: `tf.matMul(X, W)`, Y = X·W with W stored K×N (its fast path;
 *   transposeB is several times slower there), plus disposing of the previous
 *   output. X and W are tfjs tensors already in the backend's wasm heap; Y stays
 *   a tensor in that heap, as ours does. The same call followed by `dataSync()`
 *   (the copy out to JS) is timed as well and shown as "with readback".
 * - ort-web: `await session.run({X, W})` on a one-node MatMul model, Y = X·W,
 *   W stored K×N. X and W are `ort.Tensor`s made once; ORT's API copies them
 *   into its wasm heap inside `run` and returns Y as a CPU tensor copied out,
 *   so both copies are part of its region (there is no way around them there).
 * Every region runs 3 untimed warm-up calls; then the regions of one shape are
 * sampled round-robin (one sample of each in turn, so drifting load from other
 * processes hits all alike) until each has ≥ 0.5 s and ≥ 5 samples; each sample
 * is preceded by one untimed call of the same region, so every implementation is
 * timed in its back-to-back steady state (threads awake, caches warm) as in a
 * training loop, not coming back from idle; the figure is the median per call. Flops are 2·M·K·N.
 * Codecs run on n = 4M floats with our single-thread kernels; GB/s counts the
 * f32 side (4·n bytes) for encoders and decoders alike.
 */
import { type F32, Kernels, type WasmArray } from "../kernels/mod.ts";
import { gemmXWt } from "../kernels/gemm.ts";
import {
  bf16ToF32,
  dequantizeInt8Rows,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  quantizeInt8Rows,
  topkDecode,
  topkEncode,
  topkMaxBytes,
} from "../kernels/codec.ts";
import { randn } from "../tests/util.ts";
import { measure, measureInterleaved, type MeasureOptions } from "./timing.ts";
import type { GemmPeer } from "./peers/types.ts";
import { loadTfjsPeer } from "./peers/tfjs.ts";
import { loadOrtPeer } from "./peers/ort.ts";

export type Impl = "ours" | "tfjs-wasm" | "ort-web";

export interface GemmRow {
  op: "gemm";
  /** Which benchmark case (also names the role the target list refers to). */
  case: string;
  shape: [number, number, number];
  impl: Impl;
  threads: number;
  gflops: number;
  ms: number;
  samples: number;
  /** tfjs only: the same call followed by `dataSync()`. */
  gflops_with_readback?: number;
  /** Largest |Y − f64 reference| over the checked rows. */
  max_abs_diff_ref: number;
  /** Largest |Y − ours at 1 thread| over all of Y, same inputs. */
  max_abs_diff_ours: number;
}

export type CodecOp =
  | "f16_encode"
  | "f16_decode"
  | "bf16_encode"
  | "bf16_decode"
  | "int8_quantize"
  | "int8_dequantize"
  | "topk_encode"
  | "topk_decode";

export interface CodecRow {
  op: CodecOp;
  n: number;
  threads: number;
  gb_per_s: number;
  ms: number;
  /** Decoders: largest |decode(encode(x)) − x| (topk: over the kept entries). */
  roundtrip_max_abs_err?: number;
  /** topk_decode: entries kept, and whether they are exactly the k largest |x|. */
  kept?: number;
  top_k_exact?: boolean;
}

export interface Target {
  id: string;
  description: string;
  measured: number | null;
  threshold: number;
  unit: "GFLOP/s" | "x" | "GB/s";
  met: boolean;
}

export interface ImplInfo {
  impl: Impl;
  threads: number;
  binary: string;
  layout: string;
  timed_region: string;
}

export interface Report {
  rows: GemmRow[];
  codec: CodecRow[];
  targets: Target[];
  impls: ImplInfo[];
  skipped: { impl: string; reason: string }[];
  smoke: boolean;
}

interface Options {
  json: boolean;
  smoke: boolean;
  only: "gemm" | "codec" | null;
}

const USAGE = "usage: deno task bench:kernels [--json] [--smoke] [--only gemm|codec]";

export function parseArgs(args: readonly string[]): Options {
  const opts: Options = { json: false, smoke: false, only: null };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--json") opts.json = true;
    else if (a === "--smoke") opts.smoke = true;
    else if (a === "--only" || a.startsWith("--only=")) {
      const v = a === "--only" ? args[++i] : a.slice("--only=".length);
      if (v !== "gemm" && v !== "codec") {
        throw new Error(`--only takes gemm or codec, got ${v ?? "nothing"}\n${USAGE}`);
      }
      opts.only = v;
    } else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  return opts;
}

interface GemmCase {
  id: string;
  label: string;
  shape: [number, number, number];
}

/** Full-size cases, and tiny odd-sized ones in the same roles for --smoke. */
function gemmCases(smoke: boolean): GemmCase[] {
  const full: GemmCase[] = [
    { id: "square-512", label: "GEMM", shape: [512, 512, 512] },
    { id: "square-1024", label: "GEMM", shape: [1024, 1024, 1024] },
    { id: "lora-down-576", label: "LoRA X·Aᵀ (d 576, r 16)", shape: [2048, 576, 16] },
    { id: "lora-up-576", label: "LoRA ·Bᵀ (d 576, r 16)", shape: [2048, 16, 576] },
    { id: "lora-down-2048", label: "LoRA X·Aᵀ (d 2048, r 16)", shape: [2048, 2048, 16] },
    { id: "lora-up-2048", label: "LoRA ·Bᵀ (d 2048, r 16)", shape: [2048, 16, 2048] },
  ];
  if (!smoke) return full;
  const tiny: [number, number, number][] = [
    [17, 33, 9],
    [64, 48, 40],
    [37, 24, 4],
    [37, 4, 24],
    [29, 40, 3],
    [29, 3, 40],
  ];
  return full.map((c, i) => ({ ...c, shape: tiny[i] }));
}

const LORA_CASES = ["lora-down-576", "lora-up-576", "lora-down-2048", "lora-up-2048"];

function log(msg: string): void {
  console.error(msg);
}

/** W (N×K) → Wᵀ (K×N): the peers' natural MatMul operand. */
function transpose(W: Float32Array, N: number, K: number): Float32Array {
  const t = new Float32Array(K * N);
  for (let j = 0; j < N; j++) for (let p = 0; p < K; p++) t[p * N + j] = W[j * K + p];
  return t;
}

/** Rows of Y checked against an f64 reference: all in smoke mode, else first, middle, last. */
function checkedRows(M: number, smoke: boolean): number[] {
  if (smoke) return Array.from({ length: M }, (_, i) => i);
  return [...new Set([0, M >> 1, M - 1])];
}

function referenceRows(
  X: Float32Array,
  W: Float32Array,
  K: number,
  N: number,
  rows: number[],
): Map<number, Float64Array> {
  const out = new Map<number, Float64Array>();
  for (const i of rows) {
    const y = new Float64Array(N);
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let p = 0; p < K; p++) s += X[i * K + p] * W[j * K + p];
      y[j] = s;
    }
    out.set(i, y);
  }
  return out;
}

function diffRef(Y: ArrayLike<number>, N: number, ref: Map<number, Float64Array>): number {
  let worst = 0;
  for (const [i, y] of ref) {
    for (let j = 0; j < N; j++) worst = Math.max(worst, Math.abs(Y[i * N + j] - y[j]));
  }
  return worst;
}

function diffAll(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const gflops = (M: number, K: number, N: number, ms: number) => (2 * M * K * N) / (ms * 1e6);

interface GemmContext {
  ours: Kernels[];
  peers: GemmPeer[];
  timing: MeasureOptions;
  smoke: boolean;
}

async function benchGemmCase(c: GemmCase, ctx: GemmContext): Promise<GemmRow[]> {
  const [M, K, N] = c.shape;
  const X = randn(M * K, 1000 + M + K);
  const W = randn(N * K, 2000 + N + K); // N×K
  const Wt = transpose(W, N, K); // K×N for the peers
  const ref = referenceRows(X, W, K, N, checkedRows(M, ctx.smoke));
  const base = { op: "gemm" as const, case: c.id, shape: c.shape };

  // Everything is set up first, then timed round-robin (see measureInterleaved).
  interface Entry {
    impl: Impl;
    threads: number;
    run: () => unknown;
    out: ArrayLike<number>;
    readback?: () => unknown;
  }
  const entries: Entry[] = [];
  const cleanup: (() => unknown)[] = [];
  try {
    for (const k of ctx.ours) {
      log(`  ${M}×${K}×${N} ours, ${k.threads} thread(s): set up`);
      const x = k.from(X), w = k.from(W), y: F32 = k.alloc(M * N);
      cleanup.push(() => [y, w, x].forEach((a) => a.free()));
      gemmXWt(k, y, x, w, M, K, N);
      entries.push({
        impl: "ours",
        threads: k.threads,
        run: () => gemmXWt(k, y, x, w, M, K, N),
        out: y.toArray(),
      });
    }
    for (const peer of ctx.peers) {
      log(`  ${M}×${K}×${N} ${peer.name}, ${peer.threads} thread(s): set up`);
      const g = await peer.prepare(X, Wt, M, K, N);
      cleanup.push(() => g.dispose());
      entries.push({
        impl: peer.name,
        threads: peer.threads,
        run: () => g.run(),
        out: await g.output(),
        readback: g.runWithReadback?.bind(g),
      });
    }
    const fns = entries.map((e) => e.run);
    const readbacks = entries.filter((e) => e.readback).map((e) => e.readback!);
    log(`  ${M}×${K}×${N}: timing ${fns.length + readbacks.length} regions round-robin`);
    const times = await measureInterleaved([...fns, ...readbacks], ctx.timing);
    const ours1 = entries.find((e) => e.impl === "ours" && e.threads === 1)?.out;
    let r = fns.length;
    return entries.map((e, i) => {
      const row: GemmRow = {
        ...base,
        impl: e.impl,
        threads: e.threads,
        gflops: gflops(M, K, N, times[i].medianMs),
        ms: times[i].medianMs,
        samples: times[i].samples,
        max_abs_diff_ref: diffRef(e.out, N, ref),
        max_abs_diff_ours: ours1 ? diffAll(e.out, ours1) : NaN,
      };
      if (e.readback) row.gflops_with_readback = gflops(M, K, N, times[r++].medianMs);
      return row;
    });
  } finally {
    for (const f of cleanup.reverse()) await f();
  }
}

// ---------------------------------------------------------------------------
// Codecs

function codecSize(smoke: boolean): { rows: number; cols: number } {
  return smoke ? { rows: 16, cols: 257 } : { rows: 4096, cols: 1024 };
}

async function benchCodec(k: Kernels, smoke: boolean, timing: MeasureOptions): Promise<CodecRow[]> {
  const { rows, cols } = codecSize(smoke);
  const n = rows * cols;
  const kCount = Math.max(1, Math.ceil(n / 100));
  const values = randn(n, 77);
  const bytesF32 = 4 * n;
  const out: CodecRow[] = [];
  const row = (op: CodecOp, ms: number, extra: Partial<CodecRow> = {}): CodecRow => {
    const r: CodecRow = {
      op,
      n,
      threads: k.threads,
      gb_per_s: bytesF32 / (ms * 1e6),
      ms,
      ...extra,
    };
    out.push(r);
    return r;
  };
  const time = async (op: CodecOp, fn: () => unknown) => {
    log(`  ${op}, n = ${n}`);
    return (await measure(fn, timing)).medianMs;
  };

  const x = k.from(values);
  const y = k.alloc(n);
  const half: WasmArray<"u16"> = k.alloc(n, "u16");
  const q: WasmArray<"u8"> = k.alloc(n, "u8");
  const scales = k.alloc(rows);
  const maxBytes = topkMaxBytes(n, kCount);
  const packed: WasmArray<"u8"> = k.alloc(maxBytes, "u8");
  try {
    row("f16_encode", await time("f16_encode", () => f32ToF16(k, x, half)));
    const f16Decode = await time("f16_decode", () => f16ToF32(k, half, y));
    row("f16_decode", f16Decode, { roundtrip_max_abs_err: diffAll(y.data, values) });

    row("bf16_encode", await time("bf16_encode", () => f32ToBf16(k, x, half)));
    const bf16Decode = await time("bf16_decode", () => bf16ToF32(k, half, y));
    row("bf16_decode", bf16Decode, { roundtrip_max_abs_err: diffAll(y.data, values) });

    row(
      "int8_quantize",
      await time("int8_quantize", () => quantizeInt8Rows(k, x, rows, cols, q, scales)),
    );
    const int8Decode = await time(
      "int8_dequantize",
      () => dequantizeInt8Rows(k, q, scales, rows, cols, y),
    );
    row("int8_dequantize", int8Decode, { roundtrip_max_abs_err: diffAll(y.data, values) });

    let byteLength = 0;
    row(
      "topk_encode",
      await time("topk_encode", () => {
        byteLength = topkEncode(k, x, kCount, packed);
      }),
    );
    const topkDecodeMs = await time(
      "topk_decode",
      () => topkDecode(k, packed, byteLength, n, y),
    );
    row("topk_decode", topkDecodeMs, topkCheck(values, y.data, kCount));
  } finally {
    for (const a of [packed, scales, q, half, y, x]) a.free();
  }
  return out;
}

/** Kept entries must be exactly the kCount largest |x| (ties allowed) and equal x there. */
function topkCheck(x: Float32Array, y: Float32Array, kCount: number): Partial<CodecRow> {
  let kept = 0, err = 0, minKept = Infinity, maxDropped = 0;
  for (let i = 0; i < x.length; i++) {
    if (y[i] !== 0) {
      kept++;
      err = Math.max(err, Math.abs(y[i] - x[i]));
      minKept = Math.min(minKept, Math.abs(x[i]));
    } else maxDropped = Math.max(maxDropped, Math.abs(x[i]));
  }
  return {
    roundtrip_max_abs_err: err,
    kept,
    top_k_exact: kept === kCount && minKept >= maxDropped,
  };
}

// ---------------------------------------------------------------------------
// Targets (from the issue), evaluated on this run's figures.

function targets(rows: GemmRow[], codec: CodecRow[], only: Options["only"]): Target[] {
  const out: Target[] = [];
  const find = (id: string, impl: Impl, threads: number) =>
    rows.find((r) => r.case === id && r.impl === impl && r.threads === threads)?.gflops ?? null;
  const add = (
    id: string,
    description: string,
    measured: number | null,
    threshold: number,
    unit: Target["unit"],
  ) =>
    out.push({
      id,
      description,
      measured,
      threshold,
      unit,
      met: measured !== null && measured >= threshold,
    });
  const ratio = (a: number | null, b: number | null) => (a !== null && b !== null ? a / b : null);

  if (only !== "codec") {
    add("ours-1t-512", "ours, 1 thread, GEMM 512³", find("square-512", "ours", 1), 36, "GFLOP/s");
    add(
      "ours-1t-1024",
      "ours, 1 thread, GEMM 1024³",
      find("square-1024", "ours", 1),
      38,
      "GFLOP/s",
    );
    for (const id of LORA_CASES) {
      const ours = find(id, "ours", 1);
      add(
        `${id}-vs-tfjs`,
        `${id}: ours / tfjs-wasm, 1 thread`,
        ratio(ours, find(id, "tfjs-wasm", 1)),
        1.3,
        "x",
      );
      add(
        `${id}-vs-ort`,
        `${id}: ours / ort-web, 1 thread`,
        ratio(ours, find(id, "ort-web", 1)),
        1.5,
        "x",
      );
    }
    add(
      "ours-2t-scaling-1024",
      "ours, 2 threads / 1 thread, GEMM 1024³",
      ratio(find("square-1024", "ours", 2), find("square-1024", "ours", 1)),
      1.8,
      "x",
    );
  }
  if (only !== "gemm") {
    const gb = (op: CodecOp) => codec.find((c) => c.op === op)?.gb_per_s ?? null;
    add("f16-encode", "f16 encode of 4M floats", gb("f16_encode"), 2, "GB/s");
    add("topk-encode", "top-k (k = 1%) encode of 4M floats", gb("topk_encode"), 0.5, "GB/s");
  }
  return out;
}

// ---------------------------------------------------------------------------
// Output

const fmt = (v: number | null | undefined, digits = 2) =>
  v === null || v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(digits);
const pad = (s: string, w: number) => s.padEnd(w);
const padL = (s: string, w: number) => s.padStart(w);

function printTable(report: Report, cases: GemmCase[]): void {
  const lines: string[] = [];
  if (report.smoke) lines.push("SMOKE RUN: tiny shapes, figures and targets are meaningless.\n");
  if (report.rows.length) {
    lines.push("GEMM (median per call; GFLOP/s = 2·M·K·N / time)");
    lines.push(
      "  ours1t: ours 1 thread ÷ that row (peers), or that row ÷ ours 1 thread (scal.); " +
        "readback: tfjs with dataSync; Δ ref: vs f64 on checked rows; Δ ours: vs ours 1 thread",
    );
    lines.push(
      `  ${pad("impl", 11)}${padL("threads", 8)}${padL("ms", 10)}${padL("GFLOP/s", 9)}` +
        `${padL("ours1t", 14)}${padL("readback GF/s", 15)}${padL("max|Δ ref|", 12)}` +
        `${padL("max|Δ ours|", 13)}`,
    );
    for (const c of cases) {
      const rs = report.rows.filter((r) => r.case === c.id);
      if (rs.length === 0) continue;
      lines.push(`${c.shape.join("×")}  ${c.label}  [${c.id}]`);
      const ours1 = rs.find((r) => r.impl === "ours" && r.threads === 1);
      for (const r of rs) {
        // Peers: how many times faster ours at 1 thread is; ours at n threads: speed-up over 1.
        const rel = !ours1 || r === ours1
          ? ""
          : r.impl === "ours"
          ? `${fmt(r.gflops / ours1.gflops)}x scal.`
          : `${fmt(ours1.gflops / r.gflops)}x`;
        lines.push(
          `  ${pad(r.impl, 11)}${padL(String(r.threads), 8)}${padL(fmt(r.ms, 3), 10)}` +
            `${padL(fmt(r.gflops), 9)}${padL(rel, 14)}` +
            `${padL(fmt(r.gflops_with_readback), 15)}${
              padL(r.max_abs_diff_ref.toExponential(1), 12)
            }` +
            `${padL(r.max_abs_diff_ours.toExponential(1), 13)}`,
        );
      }
    }
    lines.push("");
  }
  if (report.codec.length) {
    lines.push(
      "Codecs (ours, kernels/codec.ts; GB/s of the f32 side, 4·n bytes; timed: one call on " +
        "k.alloc arrays, topk encode including its scratch alloc; int8 as rows×cols " +
        `${codecSize(report.smoke).rows}×${codecSize(report.smoke).cols}; topk k = 1% of n)`,
    );
    lines.push(
      `${pad("op", 18)}${padL("n", 10)}${padL("thr", 4)}${padL("ms", 10)}${padL("GB/s", 8)}  check`,
    );
    for (const c of report.codec) {
      const check = c.roundtrip_max_abs_err === undefined
        ? ""
        : `roundtrip max|Δ| ${c.roundtrip_max_abs_err.toExponential(1)}` +
          (c.kept === undefined ? "" : `, kept ${c.kept}, exact top-k ${c.top_k_exact}`);
      lines.push(
        `${pad(c.op, 18)}${padL(String(c.n), 10)}${padL(String(c.threads), 4)}${
          padL(fmt(c.ms, 3), 10)
        }` +
          `${padL(fmt(c.gb_per_s), 8)}  ${check}`,
      );
    }
    lines.push("");
  }
  if (report.targets.length) {
    lines.push("Targets");
    for (const t of report.targets) {
      lines.push(
        `  ${t.met ? "MET   " : "NOT MET"} ${pad(t.description, 48)} ${
          padL(fmt(t.measured), 8)
        } ${t.unit}` +
          ` (≥ ${t.threshold})`,
      );
    }
    lines.push("");
  }
  if (report.impls.length) {
    lines.push("What each timed region contains");
    for (const i of report.impls) {
      lines.push(`  ${i.impl} (${i.threads} thread(s)): ${i.binary}`);
      lines.push(`    layout: ${i.layout}`);
      lines.push(`    timed:  ${i.timed_region}`);
    }
  }
  for (const s of report.skipped) lines.push(`  skipped ${s.impl}: ${s.reason}`);
  console.log(lines.join("\n"));
}

// ---------------------------------------------------------------------------

export async function runBenchmark(opts: Options): Promise<Report> {
  const timing: MeasureOptions = opts.smoke
    ? { minSeconds: 0.01, warmup: 1, minSamples: 3, minSampleMs: 0.2 }
    : { minSeconds: 0.5, warmup: 3, minSamples: 5 };
  const report: Report = {
    rows: [],
    codec: [],
    targets: [],
    impls: [],
    skipped: [],
    smoke: opts.smoke,
  };
  const k1 = await Kernels.load({ threads: 1 });
  const ours: Kernels[] = [k1];
  try {
    if (opts.only !== "codec") {
      report.impls.push({
        impl: "ours",
        threads: 1,
        binary: `dlora-${k1.variant}.wasm`,
        layout: "gemmXWt: Y = X·Wᵀ, W stored N×K",
        timed_region:
          "gemmXWt(k, Y, X, W, M, K, N) on k.alloc arrays; Y readable in place (Y.data)",
      });
      const k2 = await Kernels.load({ threads: 2 });
      ours.push(k2);
      report.impls.push({
        impl: "ours",
        threads: k2.threads,
        binary: `dlora-${k2.variant}.wasm`,
        layout: "gemmXWt: Y = X·Wᵀ, W stored N×K",
        timed_region: "as above, split over the thread pool (k.parallel)",
      });
      const peers: GemmPeer[] = [];
      for (
        const [impl, load] of [["tfjs-wasm", loadTfjsPeer], [
          "ort-web",
          () => loadOrtPeer(1),
        ]] as const
      ) {
        try {
          const p = await load();
          peers.push(p);
          report.impls.push({
            impl: p.name,
            threads: p.threads,
            binary: p.binary,
            layout: p.layout,
            timed_region: p.timedRegion,
          });
        } catch (e) {
          log(`${impl} unavailable: ${(e as Error).message}`);
          report.skipped.push({ impl, reason: (e as Error).message });
        }
      }
      const cases = gemmCases(opts.smoke);
      for (const c of cases) {
        log(`gemm ${c.id}`);
        report.rows.push(...await benchGemmCase(c, { ours, peers, timing, smoke: opts.smoke }));
      }
    }
    if (opts.only !== "gemm") {
      log("codec");
      report.codec = await benchCodec(k1, opts.smoke, timing);
    }
  } finally {
    for (const k of ours) k.close();
  }
  report.targets = targets(report.rows, report.codec, opts.only);
  return report;
}

if (import.meta.main) {
  let opts: Options;
  try {
    opts = parseArgs(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(2);
  }
  const report = await runBenchmark(opts);
  printTable(report, gemmCases(opts.smoke));
  if (opts.json) {
    const { rows, codec, targets, impls, skipped, smoke } = report;
    console.log(JSON.stringify({ rows, codec, targets, impls, skipped, smoke }));
  }
  // ORT and tfjs keep wasm runtimes alive; leave without waiting on them.
  Deno.exit(0);
}
