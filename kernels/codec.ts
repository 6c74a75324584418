/**
 * Transport codecs (DLORA.md §5) over wasm arrays: f32↔f16 and f32↔bf16
 * (round-to-nearest-even), int8 per-row absmax, and magnitude top-k for
 * gradients (delta-varint indices, f16 values, optional error feedback).
 *
 * NaN/Inf policy, per codec:
 * - f16: ±Inf ↔ ±Inf; finite values ≥ 65520 in magnitude round to ±Inf (RNE
 *   overflow); NaN → quiet NaN (sign and top payload bits kept). Decoding is
 *   exact; an f16 NaN decodes to a quiet f32 NaN.
 * - bf16: ±Inf ↔ ±Inf; values past the largest bf16 round to ±Inf; NaN → quiet
 *   NaN, never Inf. Decoding is the exact widening (bits << 16).
 * - int8: a row holding NaN or ±Inf is rejected (CodecError "nonfinite"): an
 *   absmax scale cannot represent it and silently mapping it would hide a
 *   diverged step. Decoding rejects a scale that is NaN, Inf or negative, and a
 *   q of −128 (never produced), before writing anything.
 * - top-k: NaN/Inf in the input (or in x + residual) is rejected before
 *   anything is written; finite values beyond ±65504 are sent as ±65504 (the
 *   error-feedback residual keeps the difference). Decoding rejects Inf/NaN
 *   values, like every other malformed payload, before touching `out`.
 */
import type { DType, F32, Kernels, WasmArray } from "./core.ts";
import { expectArray } from "./dims.ts";

export type U8 = WasmArray<"u8">;
export type U16 = WasmArray<"u16">;

export type CodecErrorReason =
  | "nonfinite"
  | "header"
  | "n-mismatch"
  | "k-too-large"
  | "truncated"
  | "value-nonfinite"
  | "index-varint"
  | "index-range"
  | "not-ascending"
  | "trailing"
  | "bad-scale"
  | "bad-q";

/** A codec refused its input; `reason` says why in a machine-readable word. */
export class CodecError extends Error {
  constructor(readonly reason: CodecErrorReason, message: string) {
    super(message);
    this.name = "CodecError";
  }
}

// Kernel error codes (kernels/assembly/codec.ts ERR_*).
const REASONS: Record<number, CodecErrorReason> = {
  1: "nonfinite",
  2: "header",
  3: "n-mismatch",
  4: "k-too-large",
  5: "truncated",
  6: "value-nonfinite",
  7: "index-varint",
  8: "index-range",
  9: "not-ascending",
  10: "trailing",
  11: "bad-scale",
  12: "bad-q",
};

/** Element-wise codecs split over threads only when a call has this many elements. */
const PARALLEL_MIN = 1 << 18;

function checkLength(fn: string, name: string, length: number, expected: number, what: string) {
  if (length !== expected) {
    throw new RangeError(`${fn}: ${name} has ${length} elements, expected ${what} = ${expected}`);
  }
}

/** Runs an element-wise (src, dst, n) kernel, split over threads when it is large. */
function elementwise(
  k: Kernels,
  name: string,
  src: number,
  srcBytes: number,
  dst: number,
  dstBytes: number,
  n: number,
): void {
  const t = k.threads;
  if (t === 1 || n < PARALLEL_MIN) {
    k.exports[name](src, dst, n);
    return;
  }
  const chunk = Math.ceil(n / t / 8) * 8;
  const jobs: number[][] = [];
  for (let s = 0; s < n; s += chunk) {
    jobs.push([src + s * srcBytes, dst + s * dstBytes, Math.min(chunk, n - s)]);
  }
  k.parallel(name, jobs);
}

/** Checks a (src → dst) element-wise conversion's arrays and runs it. */
function convert<S extends DType, D extends DType>(
  k: Kernels,
  fn: string,
  exportName: string,
  src: WasmArray<S>,
  srcType: S,
  dst: WasmArray<D>,
  dstType: D,
): void {
  expectArray(k, fn, "src", src, srcType);
  expectArray(k, fn, "dst", dst, dstType);
  checkLength(fn, "dst", dst.length, src.length, "src.length");
  const bytes = (t: DType) => (t === "u16" ? 2 : 4);
  elementwise(k, exportName, src.ptr, bytes(srcType), dst.ptr, bytes(dstType), src.length);
}

/** dst = f16(src), round-to-nearest-even. src is (n) f32, dst is (n) u16 bits. */
export function f32ToF16(k: Kernels, src: F32, dst: U16): void {
  convert(k, "f32ToF16", "codecF32ToF16", src, "f32", dst, "u16");
}

/** dst = f32(src), exact. src is (n) u16 f16 bits, dst is (n) f32. */
export function f16ToF32(k: Kernels, src: U16, dst: F32): void {
  convert(k, "f16ToF32", "codecF16ToF32", src, "u16", dst, "f32");
}

/** dst = bf16(src), round-to-nearest-even. src is (n) f32, dst is (n) u16 bits. */
export function f32ToBf16(k: Kernels, src: F32, dst: U16): void {
  convert(k, "f32ToBf16", "codecF32ToBf16", src, "f32", dst, "u16");
}

/** dst = f32(src), exact. src is (n) u16 bf16 bits, dst is (n) f32. */
export function bf16ToF32(k: Kernels, src: U16, dst: F32): void {
  convert(k, "bf16ToF32", "codecBf16ToF32", src, "u16", dst, "f32");
}

function checkDims(fn: string, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 0) {
    throw new RangeError(`${fn}: rows and cols must be non-negative integers, got ${rows}×${cols}`);
  }
}

/**
 * int8 per-row absmax. src is (rows, cols) f32; writes q (rows, cols) as int8
 * bytes (two's complement in a u8 array) and scales (rows): scale = max|x|/127,
 * q = clamp(roundHalfEven(x/scale), −127, 127); an all-zero row gets scale 0.
 * Throws CodecError "nonfinite" naming the first NaN/Inf (q and scales are then
 * partly written and must not be sent).
 */
export function quantizeInt8Rows(
  k: Kernels,
  src: F32,
  rows: number,
  cols: number,
  q: U8,
  scales: F32,
): void {
  const fn = "quantizeInt8Rows";
  checkDims(fn, rows, cols);
  expectArray(k, fn, "src", src, "f32");
  expectArray(k, fn, "q", q, "u8");
  expectArray(k, fn, "scales", scales, "f32");
  checkLength(fn, "src", src.length, rows * cols, "rows·cols");
  checkLength(fn, "q", q.length, rows * cols, "rows·cols");
  checkLength(fn, "scales", scales.length, rows, "rows");
  const code = k.exports.codecQuantizeInt8Rows(src.ptr, rows, cols, q.ptr, scales.ptr);
  if (code !== 0) {
    const r = k.exports.codecErrorDetail();
    const row = src.data.subarray(r * cols, (r + 1) * cols);
    const c = row.findIndex((v) => !Number.isFinite(v));
    throw new CodecError(
      "nonfinite",
      `${fn}: row ${r} holds ${row[c]} at column ${c}; int8 absmax encodes finite values only`,
    );
  }
}

/**
 * out = q·scale per row. q is (rows, cols) int8 bytes, scales (rows), out
 * (rows, cols) f32. Validates every scale (finite, ≥ 0) and q (≠ −128) before
 * writing; throws CodecError "bad-scale" / "bad-q" with out untouched.
 */
export function dequantizeInt8Rows(
  k: Kernels,
  q: U8,
  scales: F32,
  rows: number,
  cols: number,
  out: F32,
): void {
  const fn = "dequantizeInt8Rows";
  checkDims(fn, rows, cols);
  expectArray(k, fn, "q", q, "u8");
  expectArray(k, fn, "scales", scales, "f32");
  expectArray(k, fn, "out", out, "f32");
  checkLength(fn, "q", q.length, rows * cols, "rows·cols");
  checkLength(fn, "scales", scales.length, rows, "rows");
  checkLength(fn, "out", out.length, rows * cols, "rows·cols");
  const code = k.exports.codecDequantizeInt8Rows(q.ptr, scales.ptr, rows, cols, out.ptr);
  if (code === 0) return;
  const d = k.exports.codecErrorDetail();
  if (REASONS[code] === "bad-scale") {
    throw new CodecError(
      "bad-scale",
      `${fn}: scale of row ${d} is ${scales.data[d]}; scales must be finite and ≥ 0`,
    );
  }
  throw new CodecError(
    "bad-q",
    `${fn}: q at row ${Math.floor(d / cols)}, column ${
      d % cols
    } is −128; int8 absmax uses −127..127`,
  );
}

function varintLength(v: number): number {
  let len = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    len++;
  }
  return len;
}

/**
 * Largest top-k payload for n elements with kCount kept:
 * varint n + varint k + 2 bytes per value + one varint (< n) per index.
 */
export function topkMaxBytes(n: number, kCount: number): number {
  return varintLength(n) + varintLength(kCount) + kCount * (2 + varintLength(Math.max(0, n - 1)));
}

function checkTopk(fn: string, k: Kernels, x: F32, kCount: number, out: U8): void {
  expectArray(k, fn, "x", x, "f32");
  expectArray(k, fn, "out", out, "u8");
  if (!Number.isInteger(kCount) || kCount < 0 || kCount > x.length) {
    throw new RangeError(`${fn}: kCount must be an integer in 0..${x.length} (n), got ${kCount}`);
  }
  const need = topkMaxBytes(x.length, kCount);
  if (out.length < need) {
    throw new RangeError(
      `${fn}: out has ${out.length} bytes, need topkMaxBytes(${x.length}, ${kCount}) = ${need}`,
    );
  }
}

function runTopkEncode(fn: string, k: Kernels, x: F32, residual: number, kCount: number, out: U8) {
  const scratch = k.alloc(k.exports.codecTopkScratchBytes(), "u8");
  try {
    const r = k.exports.codecTopkEncode(x.ptr, residual, x.length, kCount, out.ptr, scratch.ptr);
    if (r > 0) return r;
    const i = k.exports.codecErrorDetail();
    const what = residual ? "x + residual" : "x";
    throw new CodecError(
      "nonfinite",
      `${fn}: ${what} is not finite at index ${i}; top-k encodes finite values only`,
    );
  } finally {
    scratch.free();
  }
}

/**
 * Encodes the kCount largest |x| (ties: lower index first) of x (n) into out:
 * `varint n | varint k | k × f16 value (LE) | k × varint index delta`, indices
 * ascending, the first delta being the index itself. Returns bytes written.
 * Throws CodecError "nonfinite" (nothing written) on NaN/Inf.
 */
export function topkEncode(k: Kernels, x: F32, kCount: number, out: U8): number {
  checkTopk("topkEncode", k, x, kCount, out);
  return runTopkEncode("topkEncode", k, x, 0, kCount, out);
}

/**
 * Error-feedback top-k: encodes y = x + residual and leaves
 * residual = y − decode(payload) (the part not sent, carried to the next call).
 * x and residual are (n). Returns bytes written. On NaN/Inf in y it throws
 * with residual and out unchanged.
 */
export function topkEncodeWithFeedback(
  k: Kernels,
  x: F32,
  residual: F32,
  kCount: number,
  out: U8,
): number {
  const fn = "topkEncodeWithFeedback";
  checkTopk(fn, k, x, kCount, out);
  expectArray(k, fn, "residual", residual, "f32");
  checkLength(fn, "residual", residual.length, x.length, "x.length");
  if (residual.ptr === x.ptr && x.length > 0) {
    throw new Error(`${fn}: residual and x must be different arrays`);
  }
  return runTopkEncode(fn, k, x, residual.ptr, kCount, out);
}

export interface TopkDecodeOptions {
  /** Add the decoded entries into out (scatter-add) instead of overwriting it with zeros elsewhere. */
  accumulate?: boolean;
}

/**
 * Decodes the first byteLength bytes of a top-k payload into out (n): dense
 * (zeros elsewhere), or added into out with `accumulate`. The whole payload is
 * validated first (header, n, k ≤ n, truncation, varints, indices in range and
 * strictly ascending, finite values, no trailing bytes); on any fault it throws
 * CodecError and out is untouched.
 */
export function topkDecode(
  k: Kernels,
  bytes: U8,
  byteLength: number,
  n: number,
  out: F32,
  opts: TopkDecodeOptions = {},
): void {
  const fn = "topkDecode";
  expectArray(k, fn, "bytes", bytes, "u8");
  expectArray(k, fn, "out", out, "f32");
  if (!Number.isInteger(byteLength) || byteLength < 0 || byteLength > bytes.length) {
    throw new RangeError(`${fn}: byteLength ${byteLength} is outside 0..${bytes.length}`);
  }
  checkLength(fn, "out", out.length, n, "n");
  const code = k.exports.codecTopkDecode(
    bytes.ptr,
    byteLength,
    n,
    out.ptr,
    opts.accumulate ? 1 : 0,
  );
  if (code === 0) return;
  const d = k.exports.codecErrorDetail();
  const reason = REASONS[code];
  const messages: Partial<Record<CodecErrorReason, string>> = {
    "header": "the payload header (n, k) is truncated or has an overlong varint",
    "n-mismatch": `the payload is for n = ${d}, expected n = ${n}`,
    "k-too-large": `the payload keeps k = ${d} entries, more than n = ${n}`,
    "truncated": `the payload is truncated: ${byteLength} bytes, its values need ${d}`,
    "value-nonfinite": `value ${d} is Inf or NaN; top-k payloads carry finite values only`,
    "index-varint": `the varint of index ${d} is truncated or longer than 32 bits`,
    "index-range": `index ${d} points past n = ${n}`,
    "not-ascending": `index ${d} repeats the previous one; indices must strictly ascend`,
    "trailing": `${d} trailing bytes after the last index`,
  };
  throw new CodecError(reason, `${fn}: ${messages[reason] ?? `error code ${code}`}`);
}
