/**
 * `deno task dlora <command>`: the command-line contract of DLORA.md §8.
 * Commands arrive with their issues; until then each says plainly that it is
 * not available rather than pretending.
 */
const commands = ["eval", "generate", "train", "convert", "coordinator", "device", "demo", "bench"];

function main(args: string[]): number {
  const [command] = args;
  if (command === undefined || command === "--help" || command === "-h") {
    console.log(`usage: deno task dlora <command> [--json]\ncommands: ${commands.join(", ")}`);
    return 0;
  }
  if (!commands.includes(command)) {
    console.error(`unknown command "${command}"; commands: ${commands.join(", ")}`);
    return 2;
  }
  console.error(
    `dlora ${command}: not built yet. The kernel library is in place (npm test, deno task bench:kernels); ` +
      `the model engine, coordinator, devices and the demo are the next issues.`,
  );
  return 3;
}

Deno.exit(main(Deno.args));
