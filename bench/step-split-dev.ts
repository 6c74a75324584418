/**
 * Developer benchmark of the split step (DLORA.md §2): the same LoRA training run once in one
 * process (timeTrainSteps) and once as a device + coordinator over a loopback WebSocket, with the
 * distributed step's wall time split into device compute, coordinator (frozen blocks) compute and
 * the rest (framing, codecs, transport, waiting); the measurement is `dlora bench split`'s
 * (runtime/cli/commands/bench_split.ts), here with f32 and any shape, host or thread count.
 * With --codecs it also trains the same job with each transport codec and compares the §7
 * held-out NLL of the resulting adapters.
 *
 *   deno run -A bench/step-split-dev.ts [--batch 8 --seq-len 256 --steps 5 --host worker
 *     --threads 1 --codecs f32,bf16,f16 --codec-steps 200]
 *
 * Device and coordinator share this machine (and its 2 cores): the split says where time goes,
 * not what a real deployment would see. The last stdout line is JSON.
 */
import { sharedText, startStack } from "../coordinator/step_testing.ts";
import { Kernels } from "../kernels/mod.ts";
import { runDevice } from "../runtime/device/device.ts";
import { LlamaModel } from "../runtime/model/llama.ts";
import { loadStories, TOK512 } from "../runtime/model/testing.ts";
import { loadLlama2cTokenizer } from "../runtime/tokenizer/llama2c.ts";
import { loraFromAdapter } from "../runtime/train/adapter.ts";
import { nllOfIds } from "../runtime/train/nll.ts";
import { measureLocal, measureSplit } from "../runtime/cli/commands/bench_split.ts";
import { parseFlags } from "../runtime/cli/args.ts";

const flags = parseFlags(Deno.args, {
  batch: "number",
  "seq-len": "number",
  steps: "number",
  host: "string",
  threads: "number",
  codecs: "string",
  "codec-steps": "number",
}, "step-split-dev");
const B = Number(flags.batch ?? 8), T = Number(flags["seq-len"] ?? 256);
const steps = Number(flags.steps ?? 5), threads = Number(flags.threads ?? 1);
const host = String(flags.host ?? "worker") as "worker" | "in-thread";
const weights = loadStories();
const tokenizer = loadLlama2cTokenizer(Deno.readFileSync(TOK512), weights.config.vocabSize);
const text = sharedText("tinyshakespeare.txt", 200_000);

// Local (the single-process baseline) and distributed: the same measurement as `dlora bench split`.
const k = await Kernels.load({ threads });
const model = new LlamaModel(k, weights);
const stack = await startStack({ host, threads });
const result: Record<string, unknown> = { model: "stories260K", B, T, steps, host, threads };
try {
  const local_step_ms = await measureLocal({ batch: B, seqLen: T, steps, threads });
  const split = await measureSplit({
    codec: "f32",
    batch: B,
    seqLen: T,
    steps,
    threads,
    host,
    text,
  });
  Object.assign(result, {
    local_step_ms,
    split_step_ms: split.split_step_ms,
    device_compute_ms: split.device_compute_ms,
    coordinator_compute_ms: split.coordinator_compute_ms,
    transport_and_framing_ms: split.transport_and_framing_ms,
    bytes_up_per_step: split.bytes_up,
    bytes_down_per_step: split.bytes_down,
    device_flops_per_step: split.device_flops,
  });
  console.error(
    `step: local ${result.local_step_ms} ms | split ${result.split_step_ms} ms = device ` +
      `${result.device_compute_ms} + coordinator ${result.coordinator_compute_ms} + transport/` +
      `framing ${result.transport_and_framing_ms}`,
  );

  if (typeof flags.codecs === "string") {
    const codecSteps = Number(flags["codec-steps"] ?? 200);
    const heldOut = tokenizer.encode(sharedText("tinyshakespeare.txt", 260_000).slice(200_000), {
      bos: true,
    });
    const evalT = 256;
    const base = await nllOfIds(model, heldOut, evalT);
    const codecs: Record<string, unknown> = { untuned_nll: base.mean_nll };
    for (const codec of flags.codecs.split(",")) {
      const dev = await stack.device(codec);
      const jobId = await stack.job({
        rank: 8,
        alpha: 16,
        lr: 3e-3,
        batch: 8,
        seq_len: 64,
        seed: 2,
        steps: codecSteps,
        codec: { activations: codec, gradients: codec },
        devices: [dev.id],
      });
      const t0 = performance.now();
      const run = await runDevice({ coordinatorUrl: stack.url, token: dev.token, text, jobId });
      const lora = loraFromAdapter(k, weights.config, run.adapter);
      const nll = await nllOfIds(model, heldOut, evalT, { hooks: lora });
      lora.free();
      codecs[codec] = {
        held_out_nll: nll.mean_nll,
        final_loss: run.losses.at(-1),
        bytes_up: run.bytesUp,
        bytes_down: run.bytesDown,
        seconds: +((performance.now() - t0) / 1000).toFixed(1),
      };
      console.error(
        `${codec}: held-out NLL ${nll.mean_nll.toFixed(4)} (untuned ${base.mean_nll.toFixed(4)})`,
      );
    }
    result.codecs = codecs;
  }
} finally {
  await stack.close();
  model.free();
  k.close();
}
console.log(JSON.stringify(result));
