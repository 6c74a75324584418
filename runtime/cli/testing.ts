/** Runs `dlora <args>` as a subprocess, the way users and benchmarks do. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The last stdout line parsed as JSON (when --json was given and it parses). */
  json: Record<string, unknown> | null;
}

export async function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const main = new URL("./main.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, ...args],
    stdout: "piped",
    stderr: "piped",
    env,
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const last = stdout.trim().split("\n").at(-1) ?? "";
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(last);
  } catch {
    json = null;
  }
  return { code: out.code, stdout, stderr: new TextDecoder().decode(out.stderr), json };
}
