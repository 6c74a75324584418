/**
 * Developer benchmark for the transport codecs on one thread: GB/s of the f32
 * side (4·n bytes) for each encoder and decoder at n = 4M, median per call
 * after warm-up (bench/timing.ts). Targets from the issue: f16 encode ≥ 2 GB/s,
 * top-k (k = 1% of n) encode ≥ 0.5 GB/s. The machine is shared: expect noise.
 *
 *   deno run -A bench/codec-dev.ts [--n 4194304] [--data uniform|zeros|sparse|equal] [--json]
 *
 * --data picks the input: uniform in ±0.01 (default), all zeros, 90% zeros, or
 * all equal to 1 (the last three are the top-k selection's worst cases: one
 * radix bin holds almost everything).
 */
import { Kernels } from "../kernels/mod.ts";
import {
  bf16ToF32,
  dequantizeInt8Rows,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  quantizeInt8Rows,
  topkDecode,
  topkEncode,
  topkEncodeWithFeedback,
  topkMaxBytes,
} from "../kernels/codec.ts";
import { adamwStep, clipGradNorm } from "../kernels/optim.ts";
import { randn } from "../tests/util.ts";
import { measure } from "./timing.ts";

const args = Deno.args;
const nArg = args.indexOf("--n");
const n = nArg >= 0 ? Number(args[nArg + 1]) : 4 * 1024 * 1024;
const json = args.includes("--json");
const dataArg = args.indexOf("--data");
const data = dataArg >= 0 ? args[dataArg + 1] : "uniform";

const k = await Kernels.load({ threads: 1 });
const cols = 1024, rows = Math.ceil(n / cols);
const values = randn(rows * cols, 1, 1e-2);
if (data === "zeros") values.fill(0);
else if (data === "equal") values.fill(1);
else if (data === "sparse") values.forEach((_, i) => i % 10 !== 0 && (values[i] = 0));
else if (data !== "uniform") {
  throw new Error(`--data takes uniform, zeros, sparse or equal, got ${data}`);
}
const x = k.from(values);
const half = k.alloc(rows * cols, "u16");
const y = k.alloc(rows * cols);
const q = k.alloc(rows * cols, "u8");
const scales = k.alloc(rows);
const kCount = Math.ceil(n / 100);
const packed = k.alloc(topkMaxBytes(rows * cols, kCount), "u8");
const residual = k.alloc(rows * cols);
residual.data.fill(0);
const m = k.alloc(rows * cols), v = k.alloc(rows * cols), g = k.from(randn(rows * cols, 2, 1e-3));
m.data.fill(0);
v.data.fill(0);

const results: { op: string; ms: number; gb_per_s: number; best_gb_per_s: number }[] = [];
async function time(op: string, fn: () => unknown): Promise<void> {
  const t = await measure(fn, { minSeconds: 1, warmup: 3 });
  const gb = (4 * rows * cols) / (t.medianMs * 1e6);
  const best = (4 * rows * cols) / (t.minMs * 1e6);
  results.push({ op, ms: t.medianMs, gb_per_s: gb, best_gb_per_s: best });
  if (!json) {
    console.log(
      `${op.padEnd(22)} ${t.medianMs.toFixed(3).padStart(9)} ms  ${
        gb.toFixed(2).padStart(6)
      } GB/s` +
        `  (best sample ${best.toFixed(2)} GB/s)`,
    );
  }
}

if (!json) {
  console.log(`n = ${rows * cols} floats (${data}), k = ${kCount}, variant ${k.variant}, 1 thread`);
}
await time("f16_encode", () => f32ToF16(k, x, half));
await time("f16_decode", () => f16ToF32(k, half, y));
await time("bf16_encode", () => f32ToBf16(k, x, half));
await time("bf16_decode", () => bf16ToF32(k, half, y));
await time("int8_quantize", () => quantizeInt8Rows(k, x, rows, cols, q, scales));
await time("int8_dequantize", () => dequantizeInt8Rows(k, q, scales, rows, cols, y));
let len = 0;
await time("topk_encode", () => {
  len = topkEncode(k, x, kCount, packed);
});
await time("topk_decode", () => topkDecode(k, packed, len, rows * cols, y));
await time("topk_encode_feedback", () => topkEncodeWithFeedback(k, x, residual, kCount, packed));
await time("adamw_step", () => adamwStep(k, { param: y, grad: g, m, v }, { lr: 1e-3, step: 10 }));
await time("clip_grad_norm", () => clipGradNorm(k, [g], 1e9));
if (json) {
  console.log(JSON.stringify({ n: rows * cols, k: kCount, data, variant: k.variant, results }));
}
