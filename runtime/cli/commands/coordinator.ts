/**
 * `dlora coordinator [--port 8470 --host 127.0.0.1 --kv PATH --open-registration]`: the cloud
 * service of DLORA.md §8. Runs until SIGINT or SIGTERM; the URL (and, at first start, the admin
 * token) go to stderr.
 */
import { StepExecutor } from "../../../coordinator/executor.ts";
import { DEFAULT_HOST, DEFAULT_PORT, serve } from "../../../coordinator/serve.ts";
import { type Flags, optionalInt, UsageError } from "../args.ts";

export const coordinatorFlags = {
  port: "number",
  host: "string",
  kv: "string",
  "open-registration": "boolean",
  threads: "number",
} as const;

export async function coordinator(flags: Flags): Promise<Record<string, unknown>> {
  const port = optionalInt(flags, "port", DEFAULT_PORT, "coordinator", 0);
  if (port > 65535) throw new UsageError(`coordinator: --port must be ≤ 65535, got ${port}`);
  const host = typeof flags.host === "string" ? flags.host : DEFAULT_HOST;
  const kv = typeof flags.kv === "string" ? flags.kv : undefined;
  const threads = optionalInt(flags, "threads", 1, "coordinator");
  const c = await serve({
    port,
    host,
    kv,
    config: { openRegistration: flags["open-registration"] === true },
    // The step stream: each base model's frozen blocks run in a worker with `threads` threads.
    executor: (deps) => new StepExecutor({ ...deps, threads }),
  });
  // The token line comes before the URL line: whoever waits for the URL has seen it by then.
  if (c.admin.generated !== null) {
    console.error(
      `dlora coordinator: admin token (shown only now; the store keeps only its hash): ` +
        c.admin.generated,
    );
  } else {
    console.error(
      `dlora coordinator: admin token ${
        c.admin.source === "env" ? "from DLORA_ADMIN_TOKEN" : "as printed at first start"
      }`,
    );
  }
  console.error(`dlora coordinator: listening on ${c.url} (store: ${c.storePath})`);
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  let received = "";
  await new Promise<void>((resolve) => {
    const stop = (signal: Deno.Signal) => () => {
      received = signal;
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
      resolve();
    };
    const handlers = signals.map((s) => [s, stop(s)] as const);
    for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  });
  console.error(`dlora coordinator: ${received}, shutting down`);
  await c.shutdown();
  return { url: c.url, store: c.storePath, stopped_by: received };
}
