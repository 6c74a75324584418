/**
 * A small pool of workers that share the kernel module's memory. A job is one
 * export called once per argument list; the calling thread and the workers
 * claim lists from a shared counter until none are left, then the caller
 * waits for the claimed ones to finish. Synchronisation is a shared control
 * block (generation, claim and done counters), so a job costs no message
 * passing, and a worker that wakes late (an idle thread can take ~0.5 ms to
 * wake) only loses its share instead of holding everyone up.
 */
export interface KernelWorker {
  postMessage(message: unknown): void;
  terminate(): void;
  addEventListener(type: "message" | "error", fn: (e: Event) => void): void;
}
export type WorkerFactory = () => KernelWorker;

export const MAX_ARGS = 16;
/** Argument lists one job carries (more are run as further jobs). */
export const MAX_LISTS = 64;
/**
 * Control block slots. NEXT counts claims up from -JOBS: a claim that returns
 * a negative value owns list (value + JOBS); a non-negative one means the job
 * is used up. Claims are always on the current job, so FN, JOBS and the lists
 * read after a successful claim belong to it.
 */
export const GEN = 0, DONE = 1, FN = 2, JOBS = 3, STOP = 4, ERR = 5, NEXT = 6, CTRL_SLOTS = 8;
/** 1 after park(): idle workers sleep at once instead of spinning; the next job clears it. */
export const PARK = 7;

function defaultFactory(): KernelWorker {
  const W = (globalThis as unknown as { Worker: new (u: URL, o: object) => KernelWorker })
    .Worker;
  // The JS bundle (kernels/build/) ships worker.js beside it; sources use worker.ts.
  const file = import.meta.url.endsWith(".ts") ? "./worker.ts" : "./worker.js";
  return new W(new URL(file, import.meta.url), { type: "module" });
}

export class ThreadPool {
  #names = new Map<string, number>();

  private constructor(
    private workers: KernelWorker[],
    private ctrl: Int32Array,
    private args: Float64Array,
    names: string[],
  ) {
    names.forEach((n, i) => this.#names.set(n, i));
  }

  get size(): number {
    return this.workers.length;
  }

  static async start(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    count: number,
    factory: WorkerFactory = defaultFactory,
  ): Promise<ThreadPool> {
    const ctrl = new Int32Array(new SharedArrayBuffer(CTRL_SLOTS * 4));
    const args = new Float64Array(new SharedArrayBuffer(MAX_LISTS * MAX_ARGS * 8));
    const names = WebAssembly.Module.exports(module)
      .filter((e) => e.kind === "function").map((e) => e.name);
    const workers: KernelWorker[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const w = factory();
      workers.push(w);
      ready.push(
        new Promise((resolve, reject) => {
          w.addEventListener("message", () => resolve());
          w.addEventListener(
            "error",
            (e) =>
              reject(new Error(`kernel worker failed: ${String((e as ErrorEvent).message ?? e)}`)),
          );
        }),
      );
      w.postMessage({ module, memory, ctrl, args, names, index: i + 1 });
    }
    await Promise.all(ready);
    return new ThreadPool(workers, ctrl, args, names);
  }

  /**
   * Runs export `name` once per argument list, on whichever thread claims the
   * list first; the calling thread runs its claims through `runLocal`.
   */
  run(name: string, argsPerThread: number[][], runLocal: (args: number[]) => void): void {
    const fn = this.#names.get(name);
    if (fn === undefined) throw new Error(`kernel export ${name} not found`);
    for (const a of argsPerThread) {
      // The last slot of a list holds its length.
      if (a.length >= MAX_ARGS) {
        throw new RangeError(`${name}: ${a.length} arguments, at most ${MAX_ARGS - 1}`);
      }
    }
    for (let at = 0; at < argsPerThread.length; at += MAX_LISTS) {
      this.#job(name, fn, argsPerThread.slice(at, at + MAX_LISTS), runLocal);
    }
  }

  #job(name: string, fn: number, lists: number[][], runLocal: (args: number[]) => void): void {
    const n = lists.length;
    for (let t = 0; t < n; t++) {
      const a = lists[t];
      for (let j = 0; j < a.length; j++) this.args[t * MAX_ARGS + j] = a[j];
      this.args[t * MAX_ARGS + MAX_ARGS - 1] = a.length;
    }
    const ctrl = this.ctrl;
    Atomics.store(ctrl, FN, fn);
    Atomics.store(ctrl, JOBS, n);
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, NEXT, -n);
    Atomics.store(ctrl, PARK, 0);
    Atomics.add(ctrl, GEN, 1);
    Atomics.notify(ctrl, GEN);
    let failure: unknown = null;
    for (let claim = Atomics.add(ctrl, NEXT, 1); claim < 0; claim = Atomics.add(ctrl, NEXT, 1)) {
      try {
        runLocal(lists[claim + n]);
      } catch (e) {
        // Keep counting: workers may still be running lists of this job.
        failure ??= e;
      }
      Atomics.add(ctrl, DONE, 1);
    }
    while (Atomics.load(ctrl, DONE) < n) {
      // Spin: the lists left are running on workers, and the main thread may not block in browsers.
    }
    if (failure !== null) throw failure;
    if (Atomics.exchange(ctrl, ERR, 0) !== 0) {
      throw new Error(`kernel ${name} trapped on a worker thread (out-of-bounds pointer or size?)`);
    }
  }

  /**
   * Idle workers sleep now instead of spinning until the next job: for a caller about to wait
   * on something slow (the network), so that their spinning does not take the cores from
   * another process. The next job wakes them (and clears this).
   */
  park(): void {
    Atomics.store(this.ctrl, PARK, 1);
  }

  close(): void {
    Atomics.store(this.ctrl, STOP, 1);
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    for (const w of this.workers) w.terminate();
    this.workers = [];
  }
}
