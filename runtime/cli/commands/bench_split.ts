/**
 * `dlora bench split [--quick] [--json] [--threads N]`: the split step (DLORA.md §2) against local
 * training. stories260K, batch 8 × seq 256, LoRA rank 8 on all seven projections: the step time
 * of a device + coordinator over a loopback WebSocket (StepExecutor with the frozen blocks in its
 * model worker, runDevice with its own WebSocket client) and of the same training in one process
 * (timeTrainSteps), for the f32 and bf16 transport codecs, with the bytes per step each way.
 * Both sides of the split share this machine's cores; each row is at one kernel thread count
 * for both the device and the coordinator's model worker (the phases alternate, so the side
 * computing may use the cores while the other waits; waiting pools are parked, not spinning) and
 * for the local baseline: 1 and 2 threads, or just `--threads N`. The target compares the best
 * bf16 split step with the best local step over the thread counts measured. --quick: 2 timed
 * steps (and 1 warm-up) of a shorter sequence (64), which the target is then not judged on.
 * `--micro-batch N` splits the device's batch into micro-batches of N rows, pipelined 2 in
 * flight (DLORA.md §2; the gradient stays the whole batch's). Default: every codec with the whole
 * batch in one micro-batch, and (full run only) bf16 also as two pipelined half-batches — on a
 * quiet 2-core box that is the faster split at one thread and the slower at two, since the
 * device and the coordinator then compete for the same cores (see README).
 */
import { sharedText, startStack } from "../../../coordinator/step_testing.ts";
import type { StepReport } from "../../../coordinator/session.ts";
import { Kernels } from "../../../kernels/mod.ts";
import { runDevice } from "../../device/device.ts";
import { loadModel } from "../../load.ts";
import { LlamaModel } from "../../model/llama.ts";
import { LocalLora } from "../../model/lora.ts";
import { BENCH_LORA, benchBatch, timeTrainSteps } from "../../train/throughput.ts";

export interface SplitOptions {
  codec: string;
  batch: number;
  seqLen: number;
  /** Timed steps (one more runs first as warm-up). */
  steps: number;
  /** Kernel threads of the device and of the coordinator's model worker. */
  threads: number;
  host?: "worker" | "in-thread";
  /** Rows per micro-batch on the device (default the whole batch) and how many are in flight. */
  microBatch?: number;
  pipeline?: number;
  /** Private text of the device (default 200k characters of tinyshakespeare). */
  text?: string;
}

export interface SplitTiming {
  /** Median wall time of the timed steps, on the device's clock. */
  split_step_ms: number;
  device_compute_ms: number;
  coordinator_compute_ms: number;
  /** The rest: codecs, framing, transport, waiting for the other side's threads. */
  transport_and_framing_ms: number;
  bytes_up: number;
  bytes_down: number;
  /** The device's counted FLOPs per step (ends, LoRA, optimizer). */
  device_flops: number;
}

const JOB = { rank: BENCH_LORA.rank, alpha: BENCH_LORA.alpha, lr: 1e-3, seed: BENCH_LORA.seed };
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const ms = (s: number) => +(1000 * s).toFixed(1);

/** One distributed run over loopback: a coordinator on 127.0.0.1:0 and one device. */
export async function measureSplit(o: SplitOptions): Promise<SplitTiming> {
  const reports: StepReport[] = [];
  const stack = await startStack({
    host: o.host ?? "worker",
    threads: o.threads,
    onStep: (r) => reports.push(r),
  });
  try {
    const d = await stack.device("bench-split");
    const jobId = await stack.job({
      ...JOB,
      batch: o.batch,
      seq_len: o.seqLen,
      steps: o.steps + 1,
      codec: { activations: o.codec, gradients: o.codec },
      devices: [d.id],
    });
    const r = await runDevice({
      coordinatorUrl: stack.url,
      token: d.token,
      jobId,
      text: o.text ?? sharedText("tinyshakespeare.txt", 200_000),
      threads: o.threads,
      microBatch: o.microBatch,
      pipeline: o.pipeline,
    });
    await stack.executor.idle();
    const split = median(r.stepSeconds.slice(1));
    const device = r.computeSeconds / r.stepSeconds.length;
    const coordinator = mean(reports.slice(1).map((x) => x.computeSeconds));
    return {
      split_step_ms: ms(split),
      device_compute_ms: ms(device),
      coordinator_compute_ms: ms(coordinator),
      transport_and_framing_ms: ms(split - device - coordinator),
      bytes_up: Math.round(r.bytesUp / r.losses.length),
      bytes_down: Math.round(r.bytesDown / r.losses.length),
      device_flops: Math.round(
        Object.values(r.flops).reduce((a, b) => a + b, 0) / r.losses.length,
      ),
    };
  } finally {
    await stack.close();
  }
}

/** The same training in one process: median step milliseconds. */
export async function measureLocal(
  o: { batch: number; seqLen: number; steps: number; threads: number },
): Promise<number> {
  const { weights } = await loadModel("stories260K");
  const k = await Kernels.load({ threads: o.threads });
  const model = new LlamaModel(k, weights);
  const lora = new LocalLora(k, weights.config, BENCH_LORA);
  try {
    const batch = benchBatch(weights.config, o.batch, o.seqLen);
    const t = await timeTrainSteps(model, lora, batch, { steps: o.steps, warmup: 1 });
    return +t.medianMs.toFixed(1);
  } finally {
    lora.free();
    model.free();
    k.close();
  }
}

export interface SplitRow extends SplitTiming {
  codec: string;
  batch: number;
  seq_len: number;
  threads: number;
  /** Rows per micro-batch of the split step (several are pipelined, 2 in flight). */
  micro_batch: number;
  local_step_ms: number;
  /** split_step_ms / local_step_ms. */
  overhead: number;
}

export const SPLIT_CODECS = ["f32", "bf16"] as const;
const TARGET = { name: "overhead bf16 ≤ 1.3", codec: "bf16", max: 1.3, batch: 8, seqLen: 256 };

export async function benchSplit(
  o: { quick: boolean; threads?: number; steps?: number; microBatch?: number },
): Promise<Record<string, unknown>> {
  const batch = 8, seqLen = o.quick ? 64 : 256, steps = o.steps ?? (o.quick ? 2 : 5);
  const microBatch = Math.min(o.microBatch ?? batch, batch);
  const rows: SplitRow[] = [];
  for (const threads of o.threads === undefined ? [1, 2] : [o.threads]) {
    for (const codec of SPLIT_CODECS) {
      rows.push(await splitRow(codec, batch, seqLen, steps, threads, microBatch));
    }
    // Without --micro-batch the full run also measures bf16 as two pipelined half-batches
    // (the device's work and the coordinator's overlap when each has a core of its own).
    if (o.microBatch === undefined && !o.quick) {
      rows.push(await splitRow("bf16", batch, seqLen, steps, threads, batch / 2));
    }
  }
  return { rows, targets: judgeSplit(rows), quick: o.quick };
}

async function splitRow(
  codec: string,
  batch: number,
  seqLen: number,
  steps: number,
  threads: number,
  microBatch: number,
): Promise<SplitRow> {
  // Split then local at once, so slow phases of this shared machine hit both alike.
  const split = await measureSplit({ codec, batch, seqLen, steps, threads, microBatch });
  const local = await measureLocal({ batch, seqLen, steps, threads });
  const row: SplitRow = {
    codec,
    batch,
    seq_len: seqLen,
    threads,
    micro_batch: microBatch,
    ...split,
    local_step_ms: local,
    overhead: +(split.split_step_ms / local).toFixed(3),
  };
  console.error(
    `bench split: ${codec} ${batch}×${seqLen} threads=${threads} micro-batch ${microBatch}: split ` +
      `${row.split_step_ms} ms (device ${row.device_compute_ms} + coordinator ` +
      `${row.coordinator_compute_ms} + transport/framing ${row.transport_and_framing_ms}) vs ` +
      `local ${local} ms → ×${row.overhead}; ↑ ${row.bytes_up} B ↓ ${row.bytes_down} B per step`,
  );
  return row;
}

/**
 * The target: the fastest bf16 split step over the fastest local step, both over the thread
 * counts measured at the target's shape (null when none was).
 */
export function judgeSplit(
  rows: readonly SplitRow[],
): { name: string; measured: number | null; met: boolean | null }[] {
  const shaped = rows.filter((r) => r.batch === TARGET.batch && r.seq_len === TARGET.seqLen);
  const split = shaped.filter((r) => r.codec === TARGET.codec).map((r) => r.split_step_ms);
  const local = shaped.map((r) => r.local_step_ms);
  const measured = split.length === 0
    ? null
    : +(Math.min(...split) / Math.min(...local)).toFixed(3);
  return [{
    name: TARGET.name,
    measured,
    met: measured === null ? null : measured <= TARGET.max,
  }];
}
