import { assert, assertEquals } from "../../tests/util.ts";
import { judgeSplit, type SplitRow } from "./commands/bench_split.ts";
import { runCli } from "./testing.ts";

Deno.test("bench split --quick: one row per codec with times, bytes and the judged target", async () => {
  const r = await runCli(["bench", "split", "--quick", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const { rows, targets } = r.json as {
    rows: SplitRow[];
    targets: { name: string; measured: number | null; met: boolean | null }[];
  };
  assertEquals(rows.map((x) => `${x.codec}@${x.threads}`), ["f32@1", "bf16@1", "f32@2", "bf16@2"]);
  for (const row of rows) {
    for (const key of ["split_step_ms", "local_step_ms", "overhead", "bytes_up", "bytes_down"]) {
      const v = row[key as keyof SplitRow];
      assert(typeof v === "number" && v > 0, `${key} in ${JSON.stringify(row)}`);
    }
    assertEquals(row.overhead, +(row.split_step_ms / row.local_step_ms).toFixed(3));
    assertEquals(row.micro_batch, 8, "the whole batch in one micro-batch by default");
  }
  // bf16 halves the tensor payload each way (the frame headers stay).
  for (const [f32, bf16] of [[rows[0], rows[1]], [rows[2], rows[3]]]) {
    assert(bf16.bytes_up < 0.6 * f32.bytes_up, JSON.stringify(rows));
    assert(bf16.bytes_down < 0.6 * f32.bytes_down, JSON.stringify(rows));
  }
  // A --quick run is of a shorter sequence: the target is named but not judged on it.
  assertEquals(targets, [{ name: "overhead bf16 ≤ 1.3", measured: null, met: null }]);
});

Deno.test("bench split target: best bf16 split step over best local step, at 8×256 only", () => {
  const row = (codec: string, threads: number, seq: number, split: number, local: number) =>
    ({
      codec,
      batch: 8,
      seq_len: seq,
      threads,
      split_step_ms: split,
      local_step_ms: local,
      overhead: split / local,
    }) as SplitRow;
  const rows = [
    row("f32", 1, 256, 300, 200),
    row("bf16", 1, 256, 260, 210),
    row("f32", 2, 256, 280, 150),
    row("bf16", 2, 256, 240, 160),
  ];
  assertEquals(judgeSplit(rows), [{ name: "overhead bf16 ≤ 1.3", measured: 1.6, met: false }]);
  assertEquals(judgeSplit([row("bf16", 1, 256, 190, 150)])[0].met, true);
  assertEquals(judgeSplit([row("bf16", 1, 64, 100, 100)])[0].measured, null);
});
