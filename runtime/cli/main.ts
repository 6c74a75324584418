/**
 * `deno task dlora <command>`: the command-line contract of DLORA.md §8. Every command
 * takes `--json` and then prints one JSON object as the last line of stdout; progress and
 * diagnostics go to stderr. Exit codes: 0 ok, 1 failure, 2 usage error, 3 not built yet.
 */
import { type FlagSpec, parseFlags, UsageError } from "./args.ts";
import { convert, convertFlags } from "./commands/convert.ts";
import { coordinator, coordinatorFlags } from "./commands/coordinator.ts";

interface Command {
  flags: FlagSpec;
  summary: string;
  run: (
    flags: Record<string, string | number | boolean | undefined>,
  ) => Promise<Record<string, unknown>>;
}

const COMMANDS: Record<string, Command> = {
  convert: {
    flags: convertFlags,
    summary: "convert --model M --to hf|gguf --out PATH [--dtype f32|f16|bf16|q8_0]",
    run: convert,
  },
  coordinator: {
    flags: coordinatorFlags,
    summary: "coordinator [--port 8470 --host 127.0.0.1 --kv PATH --open-registration]",
    run: coordinator,
  },
};

/** Contract commands whose issue has not landed: they say so instead of pretending. */
const PENDING = ["eval", "generate", "train", "device", "demo", "bench"];

function usage(): string {
  const lines = Object.values(COMMANDS).map((c) => `  ${c.summary}`);
  return `usage: deno task dlora <command> [flags] [--json]\n${lines.join("\n")}\n` +
    `not built yet: ${PENDING.join(", ")}`;
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
    const flags = parseFlags(rest, command.flags, name);
    if (flags.help) {
      console.log(`usage: deno task dlora ${command.summary}`);
      return 0;
    }
    const result = await command.run(flags);
    if (flags.json) console.log(JSON.stringify(result));
    else printHuman(result);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(e.message);
      return 2;
    }
    console.error(`dlora ${name}: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
