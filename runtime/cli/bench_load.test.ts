import { assert, assertEquals } from "../../tests/util.ts";
import { type LoadRow, quantile } from "./commands/bench_load.ts";
import { runCli } from "./testing.ts";

Deno.test("bench load --quick: a row per device count, devices stepping, targets named", async () => {
  const r = await runCli(["bench", "load", "--quick", "--seconds", "2", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const { rows, targets } = r.json as {
    rows: LoadRow[];
    targets: { name: string; measured: number; met: boolean }[];
  };
  assertEquals(rows.map((x) => x.devices), [8, 32]);
  for (const row of rows) {
    assert(row.steps > 0 && row.steps_per_s > 0, JSON.stringify(row));
    assert(row.p50_ms > 0 && row.p99_ms >= row.p50_ms, JSON.stringify(row));
    assert(row.healthz_polls > 0 && row.healthz_p99_ms > 0, JSON.stringify(row));
    assertEquals(row.errors, 0, r.stderr);
  }
  assertEquals(targets.map((t) => t.name), ["errors = 0", "healthz p99 < 100 ms"]);
  for (const t of targets) assertEquals(typeof t.met, "boolean");
});

Deno.test("quantile: nearest rank", () => {
  assertEquals(quantile([3, 1, 2], 0.5), 2);
  assertEquals(quantile([1, 2, 3, 4], 0.5), 2);
  assertEquals(quantile(Array.from({ length: 100 }, (_, i) => i + 1), 0.99), 99);
  assertEquals(quantile([5], 0.99), 5);
  assert(Number.isNaN(quantile([], 0.5)));
});
