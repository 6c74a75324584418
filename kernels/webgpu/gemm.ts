/**
 * WGSL GEMM in the three layouts a linear layer needs (row-major f32):
 *   gemmXWt:  Y  = X·Wᵀ    X (M,K), W (N,K), Y (M,N)    forward
 *   gemmDyW:  dX = dY·W    dY (M,N), W (N,K), dX (M,K)  input gradient
 *   gemmDyTX: dW = dYᵀ·X   dY (M,N), X (M,K), dW (N,K)  weight gradient
 * each with `accumulate` (C += … instead of C = …).
 *
 * All three are one tiled kernel for C (rows,cols) = alpha·op(A)·op(B) [+ C] over
 * an inner length L, where op() transposes by indexing. A workgroup computes a
 * BM×BN tile of C, staging BK-deep slices of A and B in workgroup memory; each
 * thread holds a 4×4 block of C in registers. Bounds checks admit any size.
 * When C has few tiles and L is long (LoRA gradients: R×IN over M tokens), the
 * inner loop is split over workgroups into a scratch buffer and summed by a
 * second dispatch. Functions only enqueue work; read a tensor to wait for it.
 */
import type { Gpu, GpuTensor } from "./device.ts";
import { expectDims } from "../dims.ts";

export interface GemmOptions {
  /** C += … instead of C = … */
  accumulate?: boolean;
  /** Pieces to split the inner loop into (tuning and tests); default chosen from the shape. */
  splitK?: number;
}

/** One product C = alpha·op(A)·op(B) [+ C]; the layouts above are instances. */
export interface Product {
  C: GPUBuffer;
  A: GPUBuffer;
  B: GPUBuffer;
  rows: number;
  cols: number;
  inner: number;
  /** A is stored (inner,rows) rather than (rows,inner). */
  transA: boolean;
  /** B is stored (cols,inner) rather than (inner,cols). */
  transB: boolean;
  alpha: number;
  accumulate: boolean;
  /** Pieces to split the inner loop into; default chosen from the shape. */
  splitK?: number;
}

/**
 * Depth of the inner-dimension slice staged per step, and the per-thread block.
 * Tiles stay within WebGPU's guaranteed minimum limits (256 invocations, 16 KiB
 * of workgroup memory; 64×64 uses 256 threads and 4.3 KiB), so every conformant
 * device runs them.
 */
const BK = 8, TM = 4, TN = 4;
/** Below this many output tiles, a long inner loop is split over workgroups. */
const SPLIT_TILES = 64;
/** Each split piece keeps at least this many inner steps. */
const SPLIT_MIN_INNER = 256;
const REDUCE_THREADS = 256;

/**
 * WGSL that stages a BK-deep slice of one operand into workgroup memory as
 * vec4s over 4 consecutive outer indices (rows of A or columns of B): `S[kk*SO + q]`
 * holds outer 4q..4q+3 at inner step kk. `innerContiguous`: element (o,i) is at
 * o·inner + i (else i·outer + o); consecutive threads then walk the contiguous
 * index so global reads coalesce.
 */
function stageWgsl(
  name: string,
  tile: string,
  outer: string,
  origin: string,
  BO: number,
  innerContiguous: boolean,
  threads: number,
): string {
  const Q = BO / TN, SO = Q + 1;
  const split = innerContiguous
    ? `let kk = e % ${BK}u; let q = e / ${BK}u;`
    : `let q = e % ${Q}u; let kk = e / ${Q}u;`;
  const at = innerContiguous ? `o * p.inner + i` : `i * ${outer} + o`;
  const total = Q * BK, steps = Math.ceil(total / threads);
  // Threads past the slice's size idle when it has fewer vec4s than threads.
  const guard = steps * threads === total ? "" : `if (e >= ${total}u) { break; }`;
  return `for (var t = 0u; t < ${steps}u; t++) {
      let e = li + t * ${threads}u;
      ${guard}
      ${split}
      let i = k0 + kk;
      var v = vec4<f32>(0.0);
      if (i < kEnd) {
        for (var c = 0u; c < 4u; c++) {
          let o = ${origin} + 4u * q + c;
          if (o < ${outer}) { v[c] = ${name}[${at}]; }
        }
      }
      ${tile}[kk * ${SO}u + q] = v;
    }`;
}

/** WGSL for one (transA, transB, BM, BN) variant. */
export function gemmWgsl(transA: boolean, transB: boolean, BM: number, BN: number): string {
  const TX = BN / TN, TY = BM / TM, THREADS = TX * TY;
  // Staged slices are vec4 arrays: one 128-bit read gives a thread its 4 rows
  // (or columns) per step, and llvmpipe compiles the zero-initialisation of a
  // vec4 array far faster than of a scalar array of the same size. Each row of
  // a slice is padded by one vec4 so strided stores spread over memory banks.
  const SA = BM / TM + 1, SB = BN / TN + 1;
  const rowsOut: string[] = [];
  for (let i = 0; i < TM; i++) {
    rowsOut.push(`store(row0 + ty * ${TM}u + ${i}u, col0 + tx * ${TN}u, c${i}, zoff);`);
  }
  return /* wgsl */ `
struct Params { rows: u32, cols: u32, inner: u32, chunk: u32, accumulate: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
var<workgroup> As: array<vec4<f32>, ${BK * SA}>;
var<workgroup> Bs: array<vec4<f32>, ${BK * SB}>;

// Writes 4 consecutive outputs of row r from column c on.
fn store(r: u32, c: u32, acc: vec4<f32>, zoff: u32) {
  if (r >= p.rows) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (c + j < p.cols) {
      let idx = zoff + r * p.cols + c + j;
      var v = p.alpha * acc[j];
      if (p.accumulate != 0u) { v += C[idx]; }
      C[idx] = v;
    }
  }
}

@compute @workgroup_size(${TX}, ${TY})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row0 = wg.y * ${BM}u;
  let col0 = wg.x * ${BN}u;
  let tx = lid.x;
  let ty = lid.y;
  // Split-K piece wg.z covers inner [kBegin, kEnd) and writes its own slice of C.
  let kBegin = wg.z * p.chunk;
  let kEnd = min(p.inner, kBegin + p.chunk);
  let zoff = wg.z * p.rows * p.cols;
  var c0 = vec4<f32>(0.0);
  var c1 = vec4<f32>(0.0);
  var c2 = vec4<f32>(0.0);
  var c3 = vec4<f32>(0.0);
  for (var k0 = kBegin; k0 < kEnd; k0 += ${BK}u) {
    ${stageWgsl("A", "As", "p.rows", "row0", BM, !transA, THREADS)}
    ${stageWgsl("B", "Bs", "p.cols", "col0", BN, transB, THREADS)}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      let a = As[kk * ${SA}u + ty];
      let b = Bs[kk * ${SB}u + tx];
      c0 = fma(vec4<f32>(a.x), b, c0);
      c1 = fma(vec4<f32>(a.y), b, c1);
      c2 = fma(vec4<f32>(a.z), b, c2);
      c3 = fma(vec4<f32>(a.w), b, c3);
    }
    workgroupBarrier();
  }
  ${rowsOut.join("\n  ")}
}
`;
}

/** Sums split-K pieces: C = alpha·Σ_z S[z] [+ C]. */
export const reduceWgsl = /* wgsl */ `
struct Params { count: u32, splits: u32, accumulate: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;

@compute @workgroup_size(${REDUCE_THREADS})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = g.x + g.y * n.x * ${REDUCE_THREADS}u;
  if (i >= p.count) { return; }
  var s = 0.0;
  for (var z = 0u; z < p.splits; z++) { s += S[z * p.count + i]; }
  var v = p.alpha * s;
  if (p.accumulate != 0u) { v += C[i]; }
  C[i] = v;
}
`;

/** Tile edge for an output edge of n: small outputs (LoRA's rank R) get 16, not 64. */
function tileOf(n: number): number {
  return n <= 16 ? 16 : 64;
}

function params(words: number[], alpha: number): ArrayBuffer {
  const buf = new ArrayBuffer(32);
  const u = new Uint32Array(buf);
  words.forEach((w, i) => (u[i] = w));
  new Float32Array(buf)[words.length] = alpha;
  return buf;
}

function bind(gpu: Gpu, pipeline: GPUComputePipeline, buffers: GPUBuffer[]): GPUBindGroup {
  return gpu.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
}

/** Pieces to split the inner loop into: enough workgroups to fill a GPU. */
function autoSplit(gpu: Gpu, tiles: number, p: Product): number {
  if (tiles >= SPLIT_TILES || p.inner < 2 * SPLIT_MIN_INNER) return 1;
  let s = Math.min(Math.ceil((2 * SPLIT_TILES) / tiles), Math.floor(p.inner / SPLIT_MIN_INNER));
  const maxBytes = gpu.limits.maxStorageBufferBindingSize;
  while (s > 1 && s * p.rows * p.cols * 4 > maxBytes) s--;
  return s;
}

/**
 * Records `p` into `pass`; uniform buffers go to `transient` (destroy after
 * submit). Sizes are the caller's to check.
 */
export function encodeProduct(
  gpu: Gpu,
  pass: GPUComputePassEncoder,
  p: Product,
  transient: GPUBuffer[],
): void {
  const { rows, cols, inner } = p;
  if (rows === 0 || cols === 0) return;
  const BM = tileOf(rows), BN = tileOf(cols);
  const gx = Math.ceil(cols / BN), gy = Math.ceil(rows / BM);
  const maxGroups = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (gx > maxGroups || gy > maxGroups) {
    throw new RangeError(
      `gemm: output ${rows}×${cols} needs ${gy}×${gx} workgroups, above this device's ` +
        `limit of ${maxGroups} per dimension; split the batch`,
    );
  }
  const tiles = gx * gy;
  let splits = Math.floor(p.splitK ?? autoSplit(gpu, tiles, p));
  splits = Math.max(1, Math.min(splits, Math.ceil(inner / BK), maxGroups));
  // Pieces are whole BK slices so no piece starts mid-slice.
  const chunk = Math.max(BK, Math.ceil(Math.ceil(inner / splits) / BK) * BK);
  splits = Math.max(1, Math.ceil(inner / chunk));

  const key = `gemm:${p.transA ? "t" : "n"}${p.transB ? "t" : "n"}:${BM}x${BN}`;
  const pipeline = gpu.pipeline(key, () => gemmWgsl(p.transA, p.transB, BM, BN));
  if (splits === 1) {
    const u = gpu.uniform(params([rows, cols, inner, chunk, p.accumulate ? 1 : 0], p.alpha));
    transient.push(u);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind(gpu, pipeline, [u, p.A, p.B, p.C]));
    pass.dispatchWorkgroups(gx, gy, 1);
    return;
  }
  const count = rows * cols;
  const scratch = gpu.scratch("gemm-splitk", splits * count * 4);
  const u = gpu.uniform(params([rows, cols, inner, chunk, 0], 1));
  transient.push(u);
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind(gpu, pipeline, [u, p.A, p.B, scratch]));
  pass.dispatchWorkgroups(gx, gy, splits);

  const reduce = gpu.pipeline("gemm-reduce", () => reduceWgsl);
  const ru = gpu.uniform(params([count, splits, p.accumulate ? 1 : 0], p.alpha));
  transient.push(ru);
  const groups = Math.ceil(count / REDUCE_THREADS);
  const rx = Math.min(groups, maxGroups), ry = Math.ceil(groups / rx);
  pass.setPipeline(reduce);
  pass.setBindGroup(0, bind(gpu, reduce, [ru, scratch, p.C]));
  pass.dispatchWorkgroups(rx, ry, 1);
}

/** Encodes the products in order in one pass and submits them together. */
export function runProducts(gpu: Gpu, products: Product[]): void {
  gpu.throwIfFailed();
  const encoder = gpu.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  const transient: GPUBuffer[] = [];
  try {
    for (const p of products) encodeProduct(gpu, pass, p, transient);
  } catch (e) {
    // Nothing was submitted: drop the half-recorded work.
    pass.end();
    for (const b of transient) b.destroy();
    throw e;
  }
  pass.end();
  gpu.submit(encoder, transient);
}

/** Throws unless `t` lives on `gpu` and has `expected` elements. */
export function checkTensor(
  gpu: Gpu,
  fn: string,
  name: string,
  t: GpuTensor,
  expected: number,
  formula: string,
): void {
  if (t.gpu !== gpu) throw new Error(`${fn}: ${name} lives on another GPU context`);
  if (t.freed) throw new Error(`${fn}: ${name} was freed`);
  if (t.length !== expected) {
    throw new RangeError(
      `${fn}: ${name} has ${t.length} elements, expected ${formula} = ${expected}`,
    );
  }
}

/** Throws when an output is also an input: WebGPU cannot bind one buffer for both. */
export function checkDistinct(fn: string, named: Record<string, GpuTensor | undefined>): void {
  const seen = new Map<GpuTensor, string>();
  for (const [name, t] of Object.entries(named)) {
    if (!t) continue;
    const other = seen.get(t);
    if (other) {
      throw new Error(
        `${fn}: ${name} and ${other} are the same tensor; outputs must not alias inputs or ` +
          "each other on WebGPU",
      );
    }
    seen.set(t, name);
  }
}

/** Y = X·Wᵀ [+ Y]. X is (M,K), W is (N,K), Y is (M,N). */
export function gemmXWt(
  gpu: Gpu,
  Y: GpuTensor,
  X: GpuTensor,
  W: GpuTensor,
  M: number,
  K: number,
  N: number,
  opts: GemmOptions = {},
): void {
  const fn = "gemmXWt";
  expectDims(fn, { M, K, N });
  checkTensor(gpu, fn, "Y", Y, M * N, "M·N");
  checkTensor(gpu, fn, "X", X, M * K, "M·K");
  checkTensor(gpu, fn, "W", W, N * K, "N·K");
  checkDistinct(fn, { Y, X });
  checkDistinct(fn, { Y, W });
  runProducts(gpu, [{
    C: Y.buffer,
    A: X.buffer,
    B: W.buffer,
    rows: M,
    cols: N,
    inner: K,
    transA: false,
    transB: true,
    alpha: 1,
    accumulate: opts.accumulate ?? false,
    splitK: opts.splitK,
  }]);
}

/** dX = dY·W [+ dX]. dY is (M,N), W is (N,K), dX is (M,K). */
export function gemmDyW(
  gpu: Gpu,
  dX: GpuTensor,
  dY: GpuTensor,
  W: GpuTensor,
  M: number,
  N: number,
  K: number,
  opts: GemmOptions = {},
): void {
  const fn = "gemmDyW";
  expectDims(fn, { M, N, K });
  checkTensor(gpu, fn, "dX", dX, M * K, "M·K");
  checkTensor(gpu, fn, "dY", dY, M * N, "M·N");
  checkTensor(gpu, fn, "W", W, N * K, "N·K");
  checkDistinct(fn, { dX, dY });
  checkDistinct(fn, { dX, W });
  runProducts(gpu, [{
    C: dX.buffer,
    A: dY.buffer,
    B: W.buffer,
    rows: M,
    cols: K,
    inner: N,
    transA: false,
    transB: false,
    alpha: 1,
    accumulate: opts.accumulate ?? false,
    splitK: opts.splitK,
  }]);
}

/** dW = dYᵀ·X [+ dW]. dY is (M,N), X is (M,K), dW is (N,K). */
export function gemmDyTX(
  gpu: Gpu,
  dW: GpuTensor,
  dY: GpuTensor,
  X: GpuTensor,
  M: number,
  N: number,
  K: number,
  opts: GemmOptions = {},
): void {
  const fn = "gemmDyTX";
  expectDims(fn, { M, N, K });
  checkTensor(gpu, fn, "dW", dW, N * K, "N·K");
  checkTensor(gpu, fn, "dY", dY, M * N, "M·N");
  checkTensor(gpu, fn, "X", X, M * K, "M·K");
  checkDistinct(fn, { dW, dY });
  checkDistinct(fn, { dW, X });
  runProducts(gpu, [{
    C: dW.buffer,
    A: dY.buffer,
    B: X.buffer,
    rows: N,
    cols: K,
    inner: M,
    transA: true,
    transB: false,
    alpha: 1,
    accumulate: opts.accumulate ?? false,
    splitK: opts.splitK,
  }]);
}
