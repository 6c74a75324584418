/**
 * `dlora generate --model M [--adapter DIR] --prompt S [--max-tokens N] [--temperature T]
 * [--top-p P] [--seed S]`: continues the prompt (after BOS). Without --json the text streams
 * to stdout as it is produced; generation stops at the model's BOS/EOS (llama2.c models mark a
 * story's end with BOS), at --max-tokens, or at the context length.
 */
import { generate } from "../../model/generate.ts";
import { TokenStreamDecoder } from "../../tokenizer/tokenizer.ts";
import { type Flags, optionalInt, optionalNumber, UsageError } from "../args.ts";
import { openEngine } from "../engine.ts";

export const generateFlags = {
  model: "string",
  adapter: "string",
  prompt: "string",
  "max-tokens": "number",
  temperature: "number",
  "top-p": "number",
  seed: "number",
  tokenizer: "string",
  threads: "number",
} as const;

export async function generateCommand(flags: Flags): Promise<Record<string, unknown>> {
  const prompt = typeof flags.prompt === "string" ? flags.prompt : "";
  const maxTokens = optionalInt(flags, "max-tokens", 256, "generate", 0);
  const temperature = optionalNumber(flags, "temperature", 0);
  const topP = optionalNumber(flags, "top-p", 1);
  const seed = optionalInt(flags, "seed", 0, "generate", 0);
  if (!(temperature >= 0)) {
    throw new UsageError(`generate: --temperature must be ≥ 0, got ${temperature}`);
  }
  if (!(topP > 0 && topP <= 1)) {
    throw new UsageError(`generate: --top-p must lie in (0, 1], got ${topP}`);
  }
  const engine = await openEngine(flags, "generate");
  try {
    const tok = engine.tokenizer;
    const promptIds = tok.encode(prompt, { bos: true });
    if (promptIds.length === 0) promptIds.push(Math.max(0, tok.bosId));
    const stream = !flags.json;
    const out = new TextEncoder();
    const write = (s: string) => {
      if (stream && s !== "") Deno.stdout.writeSync(out.encode(s));
    };
    write(prompt);
    const decoder = new TokenStreamDecoder(tok, promptIds[promptIds.length - 1]);
    let text = "";
    const t0 = performance.now();
    const r = await generate(engine.model, promptIds, {
      maxTokens,
      temperature,
      topP,
      seed,
      hooks: engine.lora ?? undefined,
      stopIds: [tok.bosId, tok.eosId].filter((id) => id >= 0),
      onToken: (id) => {
        const piece = decoder.push(id);
        text += piece;
        write(piece);
      },
    });
    const rest = decoder.flush();
    text += rest;
    write(rest + "\n");
    const seconds = (performance.now() - t0) / 1000;
    return {
      text,
      ids: r.ids,
      prompt,
      generated: r.generated.length,
      stop_reason: r.stopReason,
      tokens_per_s: +(r.generated.length / seconds).toFixed(1),
      adapter: flags.adapter ?? null,
    };
  } finally {
    engine.close();
  }
}
