/** Small test helpers (no std library: JSR is unreachable here). */
import { Kernels, type LoadOptions } from "../kernels/mod.ts";

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform floats in [-scale, scale). */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

export function assertEquals<T>(actual: T, expected: T, msg = ""): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg} expected ${e}, got ${a}`);
}

export async function assertRejects(fn: () => Promise<unknown>, match?: RegExp): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    const err = e as Error;
    if (match && !match.test(err.message)) {
      throw new Error(`error message ${JSON.stringify(err.message)} does not match ${match}`);
    }
    return err;
  }
  throw new Error("expected a rejection");
}

export function assertThrows(fn: () => unknown, match?: RegExp): Error {
  try {
    fn();
  } catch (e) {
    const err = e as Error;
    if (match && !match.test(err.message)) {
      throw new Error(`error message ${JSON.stringify(err.message)} does not match ${match}`);
    }
    return err;
  }
  throw new Error("expected an exception");
}

/**
 * Elementwise |a-b| ≤ atol + rtol·|b|; reports the worst index. NaN must match NaN.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 1e-4, msg = "" }: { atol?: number; rtol?: number; msg?: string } = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${msg} length ${actual.length} != ${expected.length}`);
  }
  let worst = -1, worstErr = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], b = expected[i];
    if (Number.isNaN(b) && Number.isNaN(a)) continue;
    const err = Math.abs(a - b) - (atol + rtol * Math.abs(b));
    if (!(err <= 0) && (worst < 0 || err > worstErr || Number.isNaN(err))) {
      worst = i;
      worstErr = err;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${msg} mismatch at ${worst}: got ${actual[worst]}, expected ${
        expected[worst]
      } (atol ${atol}, rtol ${rtol})`,
    );
  }
}

/** Central finite difference of scalar f at x[i] (x is modified then restored). */
export function numericGrad(
  f: () => number,
  x: Float32Array | Float64Array,
  i: number,
  h = 1e-3,
): number {
  const old = x[i];
  x[i] = old + h;
  const fp = f();
  x[i] = old - h;
  const fm = f();
  x[i] = old;
  return (fp - fm) / (2 * h);
}

const cache = new Map<string, Promise<Kernels>>();
// Stop the cached instances' worker threads when the test file ends (see runtime/model/testing.ts).
const loaded = new Set<Kernels>();
globalThis.addEventListener("unload", () => {
  for (const k of loaded) k.close();
});
/** Shared kernel instance per options within one test file. */
export function testKernels(opts: LoadOptions = {}): Promise<Kernels> {
  const key = JSON.stringify(opts);
  let k = cache.get(key);
  if (!k) {
    k = Kernels.load(opts).then((x) => (loaded.add(x), x));
    cache.set(key, k);
  }
  return k;
}
