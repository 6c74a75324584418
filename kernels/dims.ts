/**
 * Shape checks and work splitting shared by the block kernels' host wrappers
 * (norm, rope, attention, mlp, embed, xent). Internal: not exported from mod.ts.
 */
import type { DType, Kernels, WasmArray } from "./core.ts";

/** Throws unless `arr` belongs to `k`, has dtype `dtype` and exactly `expected` elements. */
export function expectLength<D extends DType>(
  k: Kernels,
  kernel: string,
  name: string,
  arr: WasmArray<D>,
  expected: number,
  formula: string,
  dtype: DType = "f32",
): void {
  expectArray(k, kernel, name, arr, dtype);
  if (arr.length !== expected) {
    throw new RangeError(
      `${kernel}: ${name} has ${arr.length} elements, expected ${formula} = ${expected}`,
    );
  }
}

/** Throws unless `arr` belongs to `k` and has dtype `dtype`. */
export function expectArray<D extends DType>(
  k: Kernels,
  kernel: string,
  name: string,
  arr: WasmArray<D>,
  dtype: DType = "f32",
): void {
  if (arr.kernels !== k) {
    throw new Error(`${kernel}: ${name} lives in another Kernels instance's memory`);
  }
  if (arr.dtype !== dtype) {
    throw new TypeError(`${kernel}: ${name} is ${arr.dtype}, expected ${dtype}`);
  }
}

/** Throws unless every named dimension is a positive integer. */
export function expectDims(kernel: string, dims: Record<string, number>): void {
  for (const [name, value] of Object.entries(dims)) {
    if (!Number.isInteger(value) || value < 1 || value > 0x7fffffff) {
      throw new RangeError(`${kernel}: ${name} must be a positive integer, got ${value}`);
    }
  }
}

/** `total / part` when it divides exactly, else an error naming both. */
export function quotient(kernel: string, what: string, total: number, part: number): number {
  if (part === 0 || total % part !== 0) {
    throw new RangeError(`${kernel}: ${what}: ${total} elements do not split into rows of ${part}`);
  }
  return total / part;
}

/** [0,n) cut into `parts` contiguous near-equal ranges (none empty). */
export function splitRange(n: number, parts: number): [number, number][] {
  const p = Math.max(1, Math.min(parts, n));
  const out: [number, number][] = [];
  for (let i = 0; i < p; i++) out.push([Math.floor((n * i) / p), Math.floor((n * (i + 1)) / p)]);
  return out;
}

/**
 * How many threads `units` independent units of `costPerUnit` each deserve:
 * splitting only pays when every thread gets at least `minCost` work (waking a
 * worker costs tens of microseconds).
 */
export function threadsFor(
  k: Kernels,
  units: number,
  costPerUnit: number,
  minCost: number,
): number {
  const byWork = Math.floor((units * costPerUnit) / minCost);
  return Math.max(1, Math.min(k.threads, units, byWork));
}
