/**
 * `deno task dlora <command>`: the command-line contract of DLORA.md §8. Every command
 * takes `--json` and then prints one JSON object as the last line of stdout; progress and
 * diagnostics go to stderr. Exit codes: 0 ok, 1 failure, 2 usage error, 3 not built yet.
 */
import { type FlagSpec, NotBuiltError, parseFlags, UsageError } from "./args.ts";
import { benchCommand, benchFlags } from "./commands/bench.ts";
import { convert, convertFlags } from "./commands/convert.ts";
import { evalCommand, evalFlags } from "./commands/eval.ts";
import { generateCommand, generateFlags } from "./commands/generate.ts";
import { trainCommand, trainFlags } from "./commands/train.ts";
import { coordinator, coordinatorFlags } from "./commands/coordinator.ts";
import { deviceCommand, deviceFlags } from "./commands/device.ts";
import { demoCommand, demoFlags, printDemoTable } from "./commands/demo.ts";

interface Command {
  flags: FlagSpec;
  summary: string;
  run: (
    flags: Record<string, string | number | boolean | undefined>,
  ) => Promise<Record<string, unknown>>;
  /** A leading word before the flags (`bench step`), passed as flags[positional]. */
  positional?: string;
  /** Prints the result without --json (default: one `key: value` line each). */
  human?: (result: Record<string, unknown>) => void;
}

const COMMANDS: Record<string, Command> = {
  convert: {
    flags: convertFlags,
    summary: "convert --model M --to hf|gguf --out PATH [--dtype f32|f16|bf16|q8_0]",
    run: convert,
  },
  coordinator: {
    flags: coordinatorFlags,
    summary: "coordinator [--port 8470 --host 127.0.0.1 --kv PATH --open-registration --threads 1]",
    run: coordinator,
  },
  device: {
    flags: deviceFlags,
    summary: "device --coordinator URL (--token T | --enroll T) --data FILE --out DIR [--job ID " +
      "--wait-for-job S --model M --tokenizer F --codec f32|f16|bf16|int8 --steps N --seed S " +
      "--micro-batch N --threads N --name S]",
    run: deviceCommand,
  },
  eval: {
    flags: evalFlags,
    summary: "eval --model M [--adapter DIR] --text FILE [--seq-len 256] [--eval-tokens N] " +
      "[--tokenizer F] [--threads N]",
    run: evalCommand,
  },
  generate: {
    flags: generateFlags,
    summary: "generate --model M [--adapter DIR] --prompt S [--max-tokens 256] " +
      "[--temperature 0] [--top-p 1] [--seed 0] [--tokenizer F] [--threads N]",
    run: generateCommand,
    // The text was streamed to stdout as it came; the figures go to stderr.
    human: (r) =>
      console.error(`(${r.generated} tokens, ${r.tokens_per_s} tokens/s, stop: ${r.stop_reason})`),
  },
  train: {
    flags: trainFlags,
    summary: "train --model M --data FILE --out DIR [--steps 100 --rank 8 --alpha 16 " +
      "--targets q,k,v,o,gate,up,down --lr 1e-3 --batch 8 --seq-len 256 --seed 0 --accumulate 1 " +
      "--warmup 0 --schedule cosine|linear|constant --held-out FRAC --eval-tokens N " +
      "--eval-seq-len 256 " +
      "--max-grad-norm 1 --weight-decay 0 --dropout 0 --tokenizer F --threads N]",
    run: trainCommand,
  },
  demo: {
    flags: demoFlags,
    summary: "demo [--devices 3 --steps 150 --codec f32|f16|bf16|int8 --seed 0 --kr off " +
      "--out out/demo-<time> --batch 8 --seq-len 64 --eval-tokens 8192]",
    run: demoCommand,
    human: printDemoTable,
  },
  bench: {
    flags: benchFlags,
    summary: "bench step [--quick] [--model stories260K|smollm-135m --threads N --steps N] | " +
      "bench split [--quick --threads N --steps N] | bench load [--quick --seconds 30]",
    run: benchCommand,
    positional: "what",
  },
};

/** Contract commands whose issue has not landed: they say so instead of pretending. */
const PENDING: string[] = [];

function usage(): string {
  const lines = Object.values(COMMANDS).map((c) => `  ${c.summary}`);
  return `usage: deno task dlora <command> [flags] [--json]\n${lines.join("\n")}` +
    (PENDING.length > 0 ? `\nnot built yet: ${PENDING.join(", ")}` : "");
}

function printHuman(result: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(result)) {
    const text = typeof value === "object" ? JSON.stringify(value) : String(value);
    console.log(`${key}: ${text.length > 200 ? text.slice(0, 200) + "…" : text}`);
  }
}

export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    if (PENDING.includes(name)) {
      console.error(
        `dlora ${name}: not built yet (a later issue); available: ${
          Object.keys(COMMANDS).join(", ")
        }`,
      );
      return 3;
    }
    console.error(`dlora: unknown command "${name}"\n${usage()}`);
    return 2;
  }
  try {
    const word = command.positional && rest[0] !== undefined && !rest[0].startsWith("--")
      ? rest.shift()
      : undefined;
    const flags = parseFlags(rest, command.flags, name);
    if (command.positional) flags[command.positional] = word;
    if (flags.help) {
      console.log(`usage: deno task dlora ${command.summary}`);
      return 0;
    }
    const result = await command.run(flags);
    if (flags.json) console.log(JSON.stringify(result));
    else (command.human ?? printHuman)(result);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(e.message);
      return 2;
    }
    if (e instanceof NotBuiltError) {
      console.error(`dlora ${e.message}`);
      return 3;
    }
    console.error(`dlora ${name}: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
