/**
 * `dlora device --coordinator URL --token T --data FILE --out DIR [--json]`: an edge device of
 * DLORA.md §8. It joins its job's step stream, trains its LoRA adapters on its private data (which
 * never leaves it) and writes the PEFT adapter to --out. Without --token it registers first
 * (capability benchmark) with --enroll TOKEN, or with none on an open-registration coordinator,
 * and waits up to --wait-for-job seconds for the operator to put it in a job.
 */
import { deviceResultJson, runDevice } from "../../device/device.ts";
import type { StreamCodecs } from "../../protocol/stream.ts";
import { type Flags, optionalInt, optionalNumber, requireString, UsageError } from "../args.ts";
import { Progress } from "../progress.ts";

export const deviceFlags = {
  coordinator: "string",
  token: "string",
  enroll: "string",
  name: "string",
  job: "string",
  "wait-for-job": "number",
  data: "string",
  out: "string",
  model: "string",
  tokenizer: "string",
  codec: "string",
  steps: "number",
  seed: "number",
  "micro-batch": "number",
  pipeline: "number",
  threads: "number",
  export: "string",
} as const;

const DTYPES = ["f32", "f16", "bf16", "int8"] as const;

export async function deviceCommand(flags: Flags): Promise<Record<string, unknown>> {
  const cmd = "device";
  const coordinatorUrl = requireString(flags, "coordinator", cmd);
  const dataFile = requireString(flags, "data", cmd);
  const out = requireString(flags, "out", cmd);
  const str = (
    name: string,
  ) => (typeof flags[name] === "string" ? flags[name] as string : undefined);
  let codecs: Partial<StreamCodecs> | undefined;
  const codec = str("codec");
  if (codec !== undefined) {
    if (!(DTYPES as readonly string[]).includes(codec)) {
      throw new UsageError(`${cmd}: --codec must be one of ${DTYPES.join(", ")}, got "${codec}"`);
    }
    // What this device sends; the coordinator sends in the job's codec.
    const c = codec as StreamCodecs["activations"];
    codecs = { activations: c, gradients: c };
  }
  const steps = flags.steps === undefined ? undefined : optionalInt(flags, "steps", 1, cmd);
  const seed = flags.seed === undefined ? undefined : optionalInt(flags, "seed", 0, cmd, 0);
  const microBatch = flags["micro-batch"] === undefined
    ? undefined
    : optionalInt(flags, "micro-batch", 1, cmd);
  // Micro-batches in flight at once: 2 (default) overlaps the device's work with the
  // coordinator's; 1 runs them one after another.
  const pipeline = flags.pipeline === undefined
    ? undefined
    : optionalInt(flags, "pipeline", 1, cmd);
  const exported = str("export");
  if (exported !== undefined && exported !== "active" && exported !== "all") {
    throw new UsageError(`${cmd}: --export must be active or all, got "${exported}"`);
  }
  const waitForJob = optionalNumber(flags, "wait-for-job", 0);
  if (!(waitForJob >= 0)) throw new UsageError(`${cmd}: --wait-for-job must be ≥ 0 seconds`);
  let bar: Progress | undefined;
  const r = await runDevice({
    coordinatorUrl,
    token: str("token"),
    enrollToken: str("enroll"),
    name: str("name"),
    jobId: str("job"),
    waitForJobMs: waitForJob * 1000,
    dataFile,
    out,
    model: str("model"),
    tokenizer: str("tokenizer"),
    codecs,
    steps,
    seed,
    microBatch,
    pipeline,
    export: exported,
    threads: optionalInt(flags, "threads", 1, cmd),
    onStep: (s) => {
      bar ??= new Progress("device", s.steps);
      bar.update(
        s.step,
        `loss ${s.loss.toFixed(3)} ${(s.seconds * 1000).toFixed(0)} ms/step ` +
          `up ${(s.bytesUp / 1e6).toFixed(1)} MB down ${(s.bytesDown / 1e6).toFixed(1)} MB`,
      );
    },
  });
  bar?.done();
  if (r.registeredToken) {
    console.error(
      `dlora device: registered as ${r.deviceId}; its token (shown only now): ${r.registeredToken}`,
    );
  }
  return deviceResultJson(r);
}
