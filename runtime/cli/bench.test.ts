import { assert, assertEquals } from "../../tests/util.ts";
import { type BenchRow, judge } from "./commands/bench.ts";
import { runCli } from "./testing.ts";

Deno.test("bench step --quick: one row per model and thread count, targets judged", async () => {
  const r = await runCli(["bench", "step", "--quick", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const { rows, targets } = r.json as { rows: BenchRow[]; targets: ReturnType<typeof judge> };
  assertEquals(rows.map((x) => `${x.model}@${x.threads}`), [
    "stories260K@1",
    "stories260K@2",
    "smollm-135m@1",
    "smollm-135m@2",
  ]);
  for (const row of rows) {
    assert(row.tokens_per_s > 0 && row.median_ms > 0 && row.steps >= 1, JSON.stringify(row));
    assert(row.peak_rss_mb === null || row.peak_rss_mb > 0, JSON.stringify(row));
  }
  assertEquals(targets.length, 4);
  for (const t of targets) assert([true, false, null].includes(t.met), JSON.stringify(t));
});

Deno.test("bench step targets: judged only on rows of the target's shape", () => {
  const row = (model: string, threads: number, seq: number, tps: number, rss: number) => ({
    model,
    batch: model === "stories260K" ? 8 : 1,
    seq_len: seq,
    threads,
    variant: "relaxed",
    tokens_per_s: tps,
    tokens_per_s_best: tps,
    median_ms: 1,
    steps: 3,
    peak_rss_mb: rss,
  });
  const t = judge([
    row("stories260K", 1, 256, 5000, 150),
    row("stories260K", 2, 256, 8000, 210),
    row("smollm-135m", 2, 64, 100, 1000),
  ]);
  assertEquals(t.map((x) => [x.value, x.met]), [[8000, true], [null, null], [210, false], [
    null,
    null,
  ]]);
});
