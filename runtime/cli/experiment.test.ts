import { assert, assertEquals } from "../../tests/util.ts";
import { runCli } from "./testing.ts";

const FIELDS: Record<string, string> = {
  task: "string",
  policy: "string",
  budget: "number|null",
  score: "string|null",
  seed: "number",
  steps: "number",
  codec: "string",
  nll_active: "number",
  nll_all: "number",
  device_flops: "number",
  bytes_up: "number",
  bytes_down: "number",
  module_steps_frac: "number",
  wall_s: "number",
};

type R = Record<string, unknown> & {
  policy: string;
  codec: string;
  steps: number;
  nll_active: number;
  nll_all: number;
  device_flops: number;
  device_flops_lora: number;
  bytes_up: number;
  bytes_down: number;
  module_steps_frac: number;
  wall_s: number;
};

Deno.test("dlora experiment kr --quick: rows of the issue's shape, report, plot and rows.json; resumable", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dlora-experiment-" });
  try {
    const r = await runCli(["experiment", "kr", "--quick", "--out", dir, "--json"]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.json !== null, `last stdout line is JSON: ${r.stdout.slice(-500)}`);
    const rows = r.json.rows as R[];
    assertEquals(
      rows.length,
      9,
      "all at 3 lengths, kr, random, oneshot, kr bf16, kr and oneshot with rank reallocation",
    );
    for (const row of rows) {
      for (const [k, type] of Object.entries(FIELDS)) {
        const t = row[k] === null ? "null" : typeof row[k];
        assert(type.split("|").includes(t), `${row.id}.${k} is ${t}, expected ${type}`);
      }
      assert(Number.isFinite(row.nll_active) && row.nll_active > 0, `${row.id} nll_active`);
      assert(row.device_flops > 0 && row.bytes_up > 0 && row.bytes_down > 0, `${row.id} costs`);
      assert(row.wall_s > 0, `${row.id} wall_s`);
    }
    const full = rows.filter((x) => x.policy === "all" && x.steps === 30);
    assertEquals(full.length, 1);
    const all = full[0];
    assertEquals(all.nll_active, all.nll_all, "all: every module is active");
    assertEquals(all.module_steps_frac, 1);
    const kr = rows.find((x) => x.policy === "kr" && x.codec === "f32" && !x.rank)!;
    const krBf16 = rows.find((x) => x.policy === "kr" && x.codec === "bf16")!;
    const bytes = (x: R) => x.bytes_up + x.bytes_down;
    assert(bytes(kr) < bytes(all), `kr bytes ${bytes(kr)} < all ${bytes(all)}`);
    assert(bytes(krBf16) < bytes(kr), `bf16 ${bytes(krBf16)} < f32 ${bytes(kr)}`);
    assert(kr.device_flops < all.device_flops, "kr computes less on the device");
    assert(kr.device_flops_lora < all.device_flops_lora, "less LoRA work");
    assert(kr.module_steps_frac < 1 && kr.module_steps_frac > 0.125, `${kr.module_steps_frac}`);
    // Rank reallocation: the kept modules grow to rank/ρ, more LoRA work for the same traffic
    // share (what is kept may differ, so the bytes only roughly).
    const grown = rows.find((x) => x.policy === "kr" && x.rank === "budget")!;
    assert(grown.device_flops_lora > kr.device_flops_lora, "grown modules compute more");
    assert(bytes(grown) < 0.6 * bytes(all), `+rank bytes ${bytes(grown)} vs all ${bytes(all)}`);
    for (const p of ["random", "oneshot"]) {
      const b = rows.find((x) => x.policy === p && !x.rank)!;
      assert(bytes(b) < bytes(all), `${p} sends less than all`);
    }
    // Shorter `all` runs cost proportionally less (the equal-FLOPs curve).
    const lengths = rows.filter((x) => x.policy === "all").sort((a, b) => a.steps - b.steps);
    assertEquals(lengths.map((x) => x.steps), [8, 15, 30]);
    assert(lengths[0].device_flops < lengths[1].device_flops, "fewer steps, fewer FLOPs");

    const targets = r.json.targets as { name: string; met: boolean | null; value: string }[];
    assertEquals(targets.length, 8);
    const rankTargets = r.json.rank_targets as typeof targets;
    assertEquals(rankTargets.length, 8);
    assert(targets.some((t) => t.met !== null), "some targets are measurable in --quick");

    const report = await Deno.readTextFile(`${dir}/report.md`);
    assert(report.includes("## Targets") && report.includes("TinyShakespeare"), "report");
    assert(report.includes("## Targets with rank reallocation"), "rank reallocation targets");
    assert(report.includes("| kr +rank |"), "rank reallocation rows in the tables");
    const svg = await Deno.readTextFile(`${dir}/nll_vs_flops.svg`);
    assert(svg.startsWith("<svg") && svg.includes("<polyline"), "plot");
    const file = JSON.parse(await Deno.readTextFile(`${dir}/rows.json`));
    assertEquals(file.rows.length, 9);
    assert(r.stderr.includes("[9/9]"), `progress on stderr: ${r.stderr.slice(-400)}`);

    // The same command again: every run is already in rows.json, nothing reruns.
    const again = await runCli(["experiment", "kr", "--quick", "--out", dir, "--json"]);
    assertEquals(again.code, 0, again.stderr);
    assertEquals([again.json!.resumed, again.json!.ran], [9, 0]);
    assertEquals(
      (again.json!.rows as R[]).map((x) => x.nll_active),
      rows.map((x) => x.nll_active),
      "resumed rows are the saved ones",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dlora experiment: usage errors and a rows.json of another job shape", async () => {
  for (
    const [args, pattern] of [
      [[], /name the experiment \(kr\)/],
      [["nope"], /got "nope"/],
      [["kr", "--jobs", "0"], /--jobs must be an integer ≥ 1/],
      [["kr", "--tasks", "tinyshakespeare,klingon"], /--tasks takes a comma list/],
      [["kr", "--seeds", "4"], /--seeds must be in 1\.\.3/],
    ] as const
  ) {
    const r = await runCli(["experiment", ...args, "--json"]);
    assertEquals(r.code, 2, `${args}: ${r.stderr}`);
    assert(pattern.test(r.stderr), `${args}: ${r.stderr}`);
  }
  const dir = await Deno.makeTempDir({ prefix: "dlora-experiment-" });
  try {
    const stale = JSON.stringify({ config: { shape: { steps: 1 } }, rows: [] });
    await Deno.writeTextFile(`${dir}/rows.json`, stale);
    const r = await runCli(["experiment", "kr", "--quick", "--out", dir, "--json"]);
    assertEquals(r.code, 1, r.stderr);
    assert(/different job shape.*remove it or use another --out/.test(r.stderr), r.stderr);
    assertEquals(await Deno.readTextFile(`${dir}/rows.json`), stale, "left as it was");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
