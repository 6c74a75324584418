/**
 * `dlora eval --model M [--adapter DIR] --text FILE [--seq-len T] [--eval-tokens N]`:
 * held-out NLL of a text (DLORA.md §7), with or without a PEFT adapter.
 */
import { heldOutNll } from "../../train/nll.ts";
import { type Flags, optionalInt, requireString } from "../args.ts";
import { openEngine, readDataText } from "../engine.ts";
import { Progress } from "../progress.ts";

export const evalFlags = {
  model: "string",
  adapter: "string",
  text: "string",
  "seq-len": "number",
  "eval-tokens": "number",
  tokenizer: "string",
  threads: "number",
} as const;

export async function evalCommand(flags: Flags): Promise<Record<string, unknown>> {
  requireString(flags, "model", "eval");
  const textPath = requireString(flags, "text", "eval");
  const seqLen = optionalInt(flags, "seq-len", 256, "eval");
  const evalTokens = flags["eval-tokens"] === undefined
    ? undefined
    : optionalInt(flags, "eval-tokens", 0, "eval", 2);
  const text = await readDataText(textPath, "text");
  const engine = await openEngine(flags, "eval");
  try {
    const t0 = performance.now();
    let bar: Progress | undefined;
    const r = await heldOutNll(engine.model, engine.tokenizer, text, seqLen, {
      hooks: engine.lora ?? undefined,
      maxTokens: evalTokens,
      onProgress: (done, total) => (bar ??= new Progress("eval", total)).update(done),
    });
    bar?.done();
    return {
      tokens: r.tokens,
      mean_nll: r.mean_nll,
      perplexity: Math.exp(r.mean_nll),
      model: flags.model,
      adapter: flags.adapter ?? null,
      seq_len: seqLen,
      threads: engine.k.threads,
      seconds: +((performance.now() - t0) / 1000).toFixed(3),
    };
  } finally {
    engine.close();
  }
}
