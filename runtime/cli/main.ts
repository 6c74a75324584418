/**
 * `deno task dlora <command>`: the command-line contract of DLORA.md §8. Every command
 * takes `--json` and then prints one JSON object as the last line of stdout; progress and
 * diagnostics go to stderr. Exit codes: 0 ok, 1 failure, 2 usage error, 3 not built yet.
 */
import { type FlagSpec, NotBuiltError, parseFlags, UsageError } from "./args.ts";

/** What a command module provides; loaded only when that command runs. */
interface CommandImpl {
  flags: FlagSpec;
  run: (
    flags: Record<string, string | number | boolean | undefined>,
  ) => Promise<Record<string, unknown>>;
  /** Prints the result without --json (default: one `key: value` line each). */
  human?: (result: Record<string, unknown>) => void;
}

interface Command {
  summary: string;
  /** Imported on use, so one command does not load (or hold the memory of) all the others. */
  load: () => Promise<CommandImpl>;
  /** A leading word before the flags (`bench step`), passed as flags[positional]. */
  positional?: string;
}

const COMMANDS: Record<string, Command> = {
  convert: {
    summary: "convert --model M --to hf|gguf --out PATH [--dtype f32|f16|bf16|q8_0]",
    load: async () => {
      const m = await import("./commands/convert.ts");
      return { flags: m.convertFlags, run: m.convert };
    },
  },
  coordinator: {
    summary: "coordinator [--port 8470 --host 127.0.0.1 --kv PATH --open-registration --threads 1]",
    load: async () => {
      const m = await import("./commands/coordinator.ts");
      return { flags: m.coordinatorFlags, run: m.coordinator };
    },
  },
  device: {
    summary: "device --coordinator URL (--token T | --enroll T) --data FILE --out DIR [--job ID " +
      "--wait-for-job S --model M --tokenizer F --codec f32|f16|bf16|int8 --steps N --seed S " +
      "--micro-batch N --pipeline N --threads N --name S --export active|all]",
    load: async () => {
      const m = await import("./commands/device.ts");
      return { flags: m.deviceFlags, run: m.deviceCommand };
    },
  },
  eval: {
    summary: "eval --model M [--adapter DIR] --text FILE [--seq-len 256] [--eval-tokens N] " +
      "[--tokenizer F] [--threads N]",
    load: async () => {
      const m = await import("./commands/eval.ts");
      return { flags: m.evalFlags, run: m.evalCommand };
    },
  },
  generate: {
    summary: "generate --model M [--adapter DIR] --prompt S [--max-tokens 256] " +
      "[--temperature 0] [--top-p 1] [--seed 0] [--tokenizer F] [--threads N]",
    load: async () => {
      const m = await import("./commands/generate.ts");
      return {
        flags: m.generateFlags,
        run: m.generateCommand,
        // The text was streamed to stdout as it came; the figures go to stderr.
        human: (r) =>
          console.error(
            `(${r.generated} tokens, ${r.tokens_per_s} tokens/s, stop: ${r.stop_reason})`,
          ),
      };
    },
  },
  train: {
    summary: "train --model M --data FILE --out DIR [--steps 100 --rank 8 --alpha 16 " +
      "--targets q,k,v,o,gate,up,down --lr 1e-3 --batch 8 --seq-len 256 --seed 0 --accumulate 1 " +
      "--warmup 0 --schedule cosine|linear|constant --held-out FRAC --eval-tokens N " +
      "--eval-seq-len 256 " +
      "--max-grad-norm 1 --weight-decay 0 --dropout 0 --tokenizer F --threads N]",
    load: async () => {
      const m = await import("./commands/train.ts");
      return { flags: m.trainFlags, run: m.trainCommand };
    },
  },
  demo: {
    summary: "demo [--devices 3 --steps 150 --codec f32|f16|bf16|int8 --seed 0 --kr on|off|rank " +
      "--out out/demo-<time> --batch 8 --seq-len 64 --eval-tokens 8192]",
    load: async () => {
      const m = await import("./commands/demo.ts");
      return { flags: m.demoFlags, run: m.demoCommand, human: m.printDemoTable };
    },
  },
  bench: {
    summary: "bench step [--quick] [--model stories260K|smollm-135m --threads N --steps N] | " +
      "bench split [--quick --threads N --steps N --micro-batch N] | bench load [--quick --seconds 30]",
    load: async () => {
      const m = await import("./commands/bench.ts");
      return { flags: m.benchFlags, run: m.benchCommand };
    },
    positional: "what",
  },
  experiment: {
    summary: "experiment kr [--quick] [--out out/experiment-kr] [--jobs 2] " +
      "[--tasks tinyshakespeare,austen,sst2] [--seeds 3]",
    load: async () => {
      const m = await import("./commands/experiment.ts");
      return { flags: m.experimentFlags, run: m.experimentCommand, human: m.printExperiment };
    },
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
    const impl = await command.load();
    const flags = parseFlags(rest, impl.flags, name);
    if (command.positional) flags[command.positional] = word;
    if (flags.help) {
      console.log(`usage: deno task dlora ${command.summary}`);
      return 0;
    }
    const result = await impl.run(flags);
    if (flags.json) console.log(JSON.stringify(result));
    else (impl.human ?? printHuman)(result);
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
