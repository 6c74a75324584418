/// <reference lib="webworker" />
/**
 * Kernel worker: instantiates the shared-memory build on the pool's memory and
 * claims argument lists of each job published in the control block.
 */
import { CTRL_SLOTS, DONE, ERR, FN, GEN, JOBS, MAX_ARGS, NEXT, PARK, STOP } from "./threads.ts";

type Init = {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctrl: Int32Array;
  args: Float64Array;
  names: string[];
  index: number;
};

/**
 * How long an idle worker spins before it sleeps. Waking a sleeping thread
 * took ~0.5 ms on our 2-core VM, longer than many of the kernel calls of a
 * training step, and the short pauses between those calls should not cost it.
 */
const SPIN_MS = 5;

self.onmessage = async (e: MessageEvent<Init>) => {
  const { module, memory, ctrl, args, names } = e.data;
  if (ctrl.length < CTRL_SLOTS) throw new Error("bad control block");
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const exp = instance.exports as Record<string, (...a: number[]) => number>;
  const fns = names.map((n) => exp[n]);
  // Read the generation before saying ready: a job published right after the pool
  // starts must be seen as new, not taken as the baseline.
  let seen = Atomics.load(ctrl, GEN);
  self.postMessage("ready");
  for (;;) {
    let spins = 0, since = 0;
    while (Atomics.load(ctrl, GEN) === seen) {
      if ((++spins & 1023) === 0) {
        const now = performance.now();
        if (since === 0) since = now;
        else if (now - since > SPIN_MS || Atomics.load(ctrl, PARK) === 1) {
          Atomics.wait(ctrl, GEN, seen);
          spins = since = 0;
        }
      }
    }
    seen = Atomics.load(ctrl, GEN);
    if (Atomics.load(ctrl, STOP) === 1) return;
    for (let claim = Atomics.add(ctrl, NEXT, 1); claim < 0; claim = Atomics.add(ctrl, NEXT, 1)) {
      const base = (claim + Atomics.load(ctrl, JOBS)) * MAX_ARGS;
      const n = args[base + MAX_ARGS - 1];
      const a: number[] = [];
      for (let j = 0; j < n; j++) a.push(args[base + j]);
      try {
        fns[Atomics.load(ctrl, FN)](...a);
      } catch {
        // A trap must not leave the caller waiting forever: flag it and count as done.
        Atomics.store(ctrl, ERR, 1);
      }
      Atomics.add(ctrl, DONE, 1);
    }
  }
};
