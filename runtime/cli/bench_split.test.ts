import { assert, assertEquals } from "../../tests/util.ts";
import type { SplitRow } from "./commands/bench_split.ts";
import { runCli } from "./testing.ts";

Deno.test("bench split --quick: one row per codec with times, bytes and the judged target", async () => {
  const r = await runCli(["bench", "split", "--quick", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const { rows, targets } = r.json as {
    rows: SplitRow[];
    targets: { name: string; measured: number | null; met: boolean | null }[];
  };
  assertEquals(rows.map((x) => x.codec), ["f32", "bf16"]);
  for (const row of rows) {
    for (const key of ["split_step_ms", "local_step_ms", "overhead", "bytes_up", "bytes_down"]) {
      const v = row[key as keyof SplitRow];
      assert(typeof v === "number" && v > 0, `${key} in ${JSON.stringify(row)}`);
    }
    assertEquals(row.overhead, +(row.split_step_ms / row.local_step_ms).toFixed(3));
  }
  // bf16 halves the tensor payload each way (the frame headers stay).
  assert(rows[1].bytes_up < 0.6 * rows[0].bytes_up, JSON.stringify(rows));
  assert(rows[1].bytes_down < 0.6 * rows[0].bytes_down, JSON.stringify(rows));
  // A --quick run is of a shorter sequence: the target is named but not judged on it.
  assertEquals(targets, [{ name: "overhead bf16 ≤ 1.3", measured: null, met: null }]);
});
