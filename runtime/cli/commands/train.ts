/**
 * `dlora train --model M --data FILE --out DIR [...]`: single-process LoRA fine-tuning (the
 * cloud-only baseline), writing a PEFT adapter (adapter_config.json + adapter_model.safetensors)
 * to --out. With --held-out FRAC the last FRAC of the data is kept out of training and its §7 NLL
 * (windows of --eval-seq-len, default 256, as `eval` measures it) is reported before and after.
 * A thin layer over runtime/train.
 */
import { writePeftAdapter } from "../../adapters/peft.ts";
import { splitText } from "../../data/text.ts";
import { writeFiles } from "../../formats/io.ts";
import type { LoraHooks } from "../../model/hooks.ts";
import { parseTargets, type Proj } from "../../model/modules.ts";
import { heldOutNll, type NllResult } from "../../train/nll.ts";
import { type Schedule, SCHEDULES } from "../../train/schedule.ts";
import { train } from "../../train/train.ts";
import { type Flags, optionalInt, optionalNumber, requireString, UsageError } from "../args.ts";
import { openEngine, readDataText } from "../engine.ts";
import { Progress } from "../progress.ts";

export const trainFlags = {
  model: "string",
  data: "string",
  out: "string",
  steps: "number",
  rank: "number",
  alpha: "number",
  targets: "string",
  lr: "number",
  batch: "number",
  "seq-len": "number",
  seed: "number",
  accumulate: "number",
  warmup: "number",
  schedule: "string",
  "held-out": "number",
  "eval-tokens": "number",
  "eval-seq-len": "number",
  "max-grad-norm": "number",
  "weight-decay": "number",
  dropout: "number",
  tokenizer: "string",
  threads: "number",
} as const;

export async function trainCommand(flags: Flags): Promise<Record<string, unknown>> {
  const cmd = "train";
  requireString(flags, "model", cmd);
  const dataPath = requireString(flags, "data", cmd);
  const out = requireString(flags, "out", cmd);
  const steps = optionalInt(flags, "steps", 100, cmd);
  const rank = optionalInt(flags, "rank", 8, cmd);
  const alpha = optionalNumber(flags, "alpha", 2 * rank);
  let targets: Proj[];
  try {
    targets = parseTargets(String(flags.targets ?? "all"));
  } catch (e) {
    throw new UsageError(`${cmd}: --targets: ${(e as Error).message}`);
  }
  const lr = optionalNumber(flags, "lr", 1e-3);
  if (!(lr > 0)) throw new UsageError(`${cmd}: --lr must be > 0, got ${lr}`);
  const batch = optionalInt(flags, "batch", 8, cmd);
  const seqLen = optionalInt(flags, "seq-len", 256, cmd);
  const seed = optionalInt(flags, "seed", 0, cmd, 0);
  const accumulate = optionalInt(flags, "accumulate", 1, cmd);
  const warmup = optionalInt(flags, "warmup", 0, cmd, 0);
  const schedule = String(flags.schedule ?? "cosine") as Schedule;
  if (!SCHEDULES.includes(schedule)) {
    throw new UsageError(`${cmd}: --schedule must be one of ${SCHEDULES.join(", ")}`);
  }
  const heldOut = optionalNumber(flags, "held-out", 0);
  if (!(heldOut >= 0 && heldOut < 1)) {
    throw new UsageError(`${cmd}: --held-out is a fraction in [0, 1), got ${heldOut}`);
  }
  const evalTokens = flags["eval-tokens"] === undefined
    ? undefined
    : optionalInt(flags, "eval-tokens", 0, cmd, 2);
  const evalSeqLen = optionalInt(flags, "eval-seq-len", 256, cmd);
  const maxGradNorm = optionalNumber(flags, "max-grad-norm", 1);
  const weightDecay = optionalNumber(flags, "weight-decay", 0);
  const dropout = optionalNumber(flags, "dropout", 0);
  if (!(maxGradNorm >= 0)) throw new UsageError(`${cmd}: --max-grad-norm must be ≥ 0 (0 = off)`);
  if (!(weightDecay >= 0)) throw new UsageError(`${cmd}: --weight-decay must be ≥ 0`);
  if (!(dropout >= 0 && dropout < 1)) throw new UsageError(`${cmd}: --dropout must lie in [0, 1)`);

  const text = await readDataText(dataPath, "data");
  const split = splitText(text, heldOut);
  const engine = await openEngine(flags, cmd);
  try {
    const { model, tokenizer } = engine;
    const evaluate = async (label: string, hooks?: LoraHooks) => {
      let bar: Progress | undefined;
      const r = await heldOutNll(model, tokenizer, split.eval, evalSeqLen, {
        hooks,
        maxTokens: evalTokens,
        onProgress: (done, total) => (bar ??= new Progress(label, total)).update(done),
      });
      bar?.done();
      return r;
    };
    let before: NllResult | null = null;
    if (heldOut > 0) before = await evaluate("held-out NLL before");
    const bar = new Progress("train", steps);
    const r = await train({
      model,
      tokenizer,
      text: split.train,
      steps,
      rank,
      alpha,
      targets,
      lr,
      batch,
      seqLen,
      seed,
      accumulate,
      warmup,
      schedule,
      maxGradNorm,
      weightDecay,
      dropout,
      baseModel: String(flags.model),
      onStep: (s) =>
        bar.update(
          s.step,
          `loss ${s.loss.toFixed(3)} lr ${s.lr.toExponential(2)} ${
            Math.round(s.tokensPerSecond)
          } tok/s`,
        ),
    });
    bar.done();
    let after: NllResult | null = null;
    try {
      if (heldOut > 0) after = await evaluate("held-out NLL after", r.lora!);
    } finally {
      r.lora!.free();
    }
    const files = writePeftAdapter(r.adapter);
    await writeFiles(out, files);
    const result: Record<string, unknown> = {
      losses: r.losses,
      adapter: out,
      tokens_per_s: Math.round(r.tokensPerSecond),
      steps,
      tokens: r.tokens,
      seconds: +r.seconds.toFixed(3),
      files: Object.keys(files).sort(),
    };
    if (before && after) {
      Object.assign(result, {
        nll_before: before.mean_nll,
        nll_after: after.mean_nll,
        held_out_tokens: after.tokens,
      });
    }
    return result;
  } finally {
    engine.close();
  }
}
