/**
 * A small pool of workers that share the kernel module's memory. A job is one
 * export called with a different argument list on each thread; the calling
 * thread runs its own share and then waits for the others. Synchronisation is
 * a shared control block (generation counter + done counter), so a job costs
 * no message passing.
 */
export interface KernelWorker {
  postMessage(message: unknown): void;
  terminate(): void;
  addEventListener(type: "message" | "error", fn: (e: Event) => void): void;
}
export type WorkerFactory = () => KernelWorker;

export const MAX_ARGS = 16;
/** Control block slots. */
export const GEN = 0, DONE = 1, FN = 2, JOBS = 3, STOP = 4, ERR = 5, CTRL_SLOTS = 8;

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
    const args = new Float64Array(new SharedArrayBuffer((count + 1) * MAX_ARGS * 8));
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

  /** Lists beyond the thread count run on the calling thread via `runLocal`. */
  run(name: string, argsPerThread: number[][], runLocal: (args: number[]) => void): void {
    const fn = this.#names.get(name);
    if (fn === undefined) throw new Error(`kernel export ${name} not found`);
    const jobs = Math.min(argsPerThread.length, this.workers.length + 1);
    for (let t = 1; t < jobs; t++) {
      const a = argsPerThread[t];
      if (a.length > MAX_ARGS) throw new RangeError(`${name}: more than ${MAX_ARGS} arguments`);
      for (let j = 0; j < a.length; j++) this.args[t * MAX_ARGS + j] = a[j];
      this.args[t * MAX_ARGS + MAX_ARGS - 1] = a.length;
    }
    const ctrl = this.ctrl;
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, FN, fn);
    Atomics.store(ctrl, JOBS, jobs);
    Atomics.add(ctrl, GEN, 1);
    Atomics.notify(ctrl, GEN);
    runLocal(argsPerThread[0]);
    for (let t = jobs; t < argsPerThread.length; t++) runLocal(argsPerThread[t]);
    const want = jobs - 1;
    while (Atomics.load(ctrl, DONE) < want) {
      // Spin: jobs are short and the main thread may not block in browsers.
    }
    if (Atomics.exchange(ctrl, ERR, 0) !== 0) {
      throw new Error(`kernel ${name} trapped on a worker thread (out-of-bounds pointer or size?)`);
    }
  }

  close(): void {
    Atomics.store(this.ctrl, STOP, 1);
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    for (const w of this.workers) w.terminate();
    this.workers = [];
  }
}
