import { assert, assertEquals } from "../../tests/util.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** The environment the command sees: ours minus any admin token, so it generates one. */
function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  return env;
}

interface Running {
  child: Deno.ChildProcess;
  url: string;
  stderr: string[];
  /** The rest of stderr once the process has ended. */
  drained: Promise<void>;
  stdout: Promise<string>;
}

/** Starts `dlora coordinator` and waits for the line with its URL. */
async function start(args: string[]): Promise<Running> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "coordinator", ...args],
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env: childEnv(),
  }).spawn();
  const stdout = new Response(child.stdout).text();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const stderr: string[] = [];
  let pending = "";
  let url: string | null = null;
  while (url === null) {
    const { done, value } = await lines.read();
    if (done) {
      await child.status;
      throw new Error(`coordinator exited before listening:\n${stderr.join("\n")}`);
    }
    pending += value;
    const parts = pending.split("\n");
    pending = parts.pop()!;
    for (const line of parts) {
      stderr.push(line);
      url ??= /listening on (http:\/\/\S+)/.exec(line)?.[1] ?? null;
    }
  }
  const drained = (async () => {
    for (;;) {
      const { done, value } = await lines.read();
      if (done) break;
      stderr.push(...value.split("\n").filter((l) => l !== ""));
    }
  })();
  return { child, url, stderr, drained, stdout };
}

async function waitForLine(r: Running, pattern: RegExp, ms = 10_000): Promise<string | undefined> {
  const deadline = performance.now() + ms;
  for (;;) {
    const line = r.stderr.find((l) => pattern.test(l));
    if (line !== undefined || performance.now() > deadline) return line;
    await new Promise((res) => setTimeout(res, 20));
  }
}

async function stop(r: Running): Promise<{ code: number; json: Record<string, unknown> }> {
  r.child.kill("SIGTERM");
  const { code } = await r.child.status;
  await r.drained;
  const last = (await r.stdout).trim().split("\n").at(-1) ?? "";
  return { code, json: JSON.parse(last) };
}

Deno.test("dlora coordinator: prints URL and admin token once, stops on SIGTERM, keeps state", async () => {
  const dir = await Deno.makeTempDir();
  const running: Running[] = [];
  try {
    const args = ["--port", "0", "--kv", `${dir}/c.kv`, "--json"];
    const first = await start(args);
    running.push(first);
    // The token line may arrive just after the URL line: wait for it (bounded).
    const tokenLine = await waitForLine(first, /admin token \(shown only now/);
    assert(tokenLine !== undefined, first.stderr.join("\n"));
    const admin = tokenLine.split(": ").at(-1)!;
    assertEquals((await (await fetch(`${first.url}/healthz`)).json()).status, "ok");
    const reg = await fetch(`${first.url}/v1/devices`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}` },
      body: JSON.stringify({ capability: { gflops: 30, threads: 2, memory_mb: 4096 } }),
    });
    assertEquals(reg.status, 201);
    const stopped = await stop(first);
    assertEquals(stopped.code, 0, first.stderr.join("\n"));
    assertEquals(stopped.json.stopped_by, "SIGTERM");

    // Restarted on the same store: no new token is printed, the first one still works.
    const second = await start(args);
    running.push(second);
    assert(!second.stderr.some((l) => /shown only now/.test(l)), second.stderr.join("\n"));
    const list = await fetch(`${second.url}/v1/devices`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    assertEquals((await list.json()).devices.length, 1);
    assertEquals((await stop(second)).code, 0);
  } finally {
    for (const r of running) {
      try {
        r.child.kill("SIGKILL"); // only if a failed assertion left it running
      } catch { /* already exited */ }
      await r.child.status;
      await r.drained;
      await r.stdout;
    }
    await Deno.remove(dir, { recursive: true });
  }
});
