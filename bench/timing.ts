/**
 * The one way every implementation is timed: warm-up calls first, then
 * repeated samples until a time budget is spent, reporting the median per call.
 * A sample groups several calls when one call is too short to time on its own.
 */
export interface Timing {
  /** Median milliseconds per call over the samples. */
  medianMs: number;
  /** Fastest sample, milliseconds per call. */
  minMs: number;
  samples: number;
  callsPerSample: number;
  /** Time spent in this function's timed samples, seconds. */
  seconds: number;
}

export interface MeasureOptions {
  /** Keep sampling until this much time has been spent (default 0.5 s). */
  minSeconds?: number;
  /** Untimed calls before sampling (default 3). */
  warmup?: number;
  /** At least this many samples (default 5), even past minSeconds. */
  minSamples?: number;
  /** At most this many samples (default 2000). */
  maxSamples?: number;
  /** A sample lasts at least this long, grouping calls (default 1 ms). */
  minSampleMs?: number;
  /**
   * Untimed calls of the same implementation right before each of its samples in
   * round-robin sampling (default 1). The other implementations run in between, so
   * without this a sample would time an implementation coming back from idle — e.g. a
   * thread pool whose workers went to sleep, which on this VM takes ~10 ms to wake —
   * instead of the back-to-back steady state a training loop runs in. Same for all.
   */
  settle?: number;
}

function isPromise(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null &&
    typeof (v as PromiseLike<unknown>).then === "function";
}

/** The median of `xs` (not modified). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError("median of an empty list");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function call(fn: () => unknown): Promise<void> {
  const r = fn();
  if (isPromise(r)) await r;
}

/**
 * Times `fn` (awaited when it returns a promise, so async peers are timed the
 * same way as synchronous ones, the await included).
 */
export async function measure(fn: () => unknown, opts: MeasureOptions = {}): Promise<Timing> {
  return (await measureInterleaved([fn], opts))[0];
}

/**
 * Times several functions round-robin, one sample of each in turn, so that
 * load from other processes drifting over time hits all of them alike. Rounds
 * go on until every function has had `minSeconds` of samples (or `maxSamples`)
 * and at least `minSamples`.
 */
export async function measureInterleaved(
  fns: (() => unknown)[],
  opts: MeasureOptions = {},
): Promise<Timing[]> {
  const {
    minSeconds = 0.5,
    warmup = 3,
    minSamples = 5,
    maxSamples = 2000,
    minSampleMs = 1,
    settle = 1,
  } = opts;
  const callsPerSample: number[] = [];
  for (const fn of fns) {
    let lastMs = 0;
    for (let i = 0; i < Math.max(1, warmup); i++) {
      const t0 = performance.now();
      await call(fn);
      lastMs = performance.now() - t0;
    }
    callsPerSample.push(Math.max(1, Math.ceil(minSampleMs / Math.max(lastMs, 1e-4))));
  }
  const perSample: number[][] = fns.map(() => []);
  const spentMs: number[] = fns.map(() => 0);
  const unfinished = () =>
    fns.some((_, f) =>
      perSample[f].length < minSamples ||
      (perSample[f].length < maxSamples && spentMs[f] < minSeconds * 1000)
    );
  while (unfinished()) {
    for (let f = 0; f < fns.length; f++) {
      for (let i = 0; i < settle; i++) await call(fns[f]);
      const t0 = performance.now();
      for (let c = 0; c < callsPerSample[f]; c++) await call(fns[f]);
      const ms = performance.now() - t0;
      spentMs[f] += ms;
      perSample[f].push(ms / callsPerSample[f]);
    }
  }
  return perSample.map((samples, f) => ({
    medianMs: median(samples),
    minMs: Math.min(...samples),
    samples: samples.length,
    callsPerSample: callsPerSample[f],
    seconds: spentMs[f] / 1000,
  }));
}
