import { assert, assertEquals, assertRejects } from "../tests/util.ts";
import { defaultKvPath, isLoopback, serve } from "./serve.ts";
import { silentLogger } from "./deps.ts";

Deno.test("serve: a real server on 127.0.0.1 port 0 registers devices and shuts down", async () => {
  const c = await serve({ port: 0, kv: ":memory:", env: () => undefined, log: silentLogger });
  try {
    assertEquals(c.host, "127.0.0.1");
    assert(c.port > 0);
    assertEquals(c.url, `http://127.0.0.1:${c.port}`);
    assertEquals(c.admin.source, "generated");
    const admin = c.admin.generated!;
    const health = await fetch(`${c.url}/healthz`);
    assertEquals(await health.json(), { status: "ok" });
    const reg = await fetch(`${c.url}/v1/devices`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ capability: { gflops: 30, threads: 2, memory_mb: 4096 } }),
    });
    assertEquals(reg.status, 201);
    const { token } = await reg.json();
    const me = await fetch(`${c.url}/v1/devices/me`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assertEquals((await me.json()).tier, "A");
    const unauthorized = await fetch(`${c.url}/v1/devices`);
    assertEquals(unauthorized.status, 401);
    await unauthorized.body?.cancel();
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    assert(metrics.includes('dlora_errors_total{kind="unauthorized"} 1'), metrics);
  } finally {
    await c.shutdown();
  }
  await c.finished;
});

Deno.test("serve: open registration only on loopback; the KV default path", async () => {
  assert(isLoopback("127.0.0.1") && isLoopback("::1") && isLoopback("localhost"));
  assert(!isLoopback("0.0.0.0") && !isLoopback("192.168.1.2"));
  await assertRejects(
    () => serve({ host: "0.0.0.0", port: 0, kv: ":memory:", config: { openRegistration: true } }),
    /only allowed on a loopback address/,
  );
  await assertRejects(() => serve({ port: 70000, kv: ":memory:" }), /port must be an integer/);
  assertEquals(defaultKvPath(() => undefined), ".dlora/coordinator.kv");
  assertEquals(
    defaultKvPath((k) => (k === "DLORA_HOME" ? "/srv/dlora" : undefined)),
    "/srv/dlora/coordinator.kv",
  );
});
