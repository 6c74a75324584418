import { assert, assertEquals } from "../../tests/util.ts";
import { runCli } from "./testing.ts";

Deno.test("dlora demo: three devices in tiers A/B/C train over loopback; JSON, adapters and reports", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dlora-demo-" });
  try {
    const r = await runCli([
      "demo",
      "--devices",
      "3",
      "--steps",
      "4",
      "--batch",
      "4",
      "--seq-len",
      "32",
      "--eval-tokens",
      "512",
      "--codec",
      "bf16",
      "--out",
      dir,
      "--json",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.json !== null, `last stdout line is JSON: ${r.stdout}`);
    const json = r.json as {
      devices: Record<string, unknown>[];
      wall_s: number;
      codec: string;
    };
    assertEquals(json.codec, "bf16");
    assert(json.wall_s > 0, "wall_s");
    assertEquals(json.devices.length, 3);
    assertEquals(json.devices.map((d) => d.tier).sort(), ["A", "B", "C"], "one device per tier");
    assertEquals(
      json.devices.map((d) => d.micro_batch),
      json.devices.map((d) => ({ A: 4, B: 4, C: 1 })[d.tier as "A" | "B" | "C"]),
      "each device's micro-batch is its tier's (capped at the job's batch of 4)",
    );
    assertEquals(new Set(json.devices.map((d) => d.id)).size, 3, "distinct device ids");
    for (const d of json.devices) {
      const losses = d.losses as number[];
      assertEquals(losses.length, 4, `${d.id} losses`);
      assert(losses.every(Number.isFinite), `${d.id} losses finite: ${losses}`);
      for (const key of ["nll_before", "nll_after"]) {
        const v = d[key] as number;
        assert(Number.isFinite(v) && v > 0, `${d.id} ${key} = ${v}`);
      }
      for (const key of ["bytes_up", "bytes_down", "flops"]) {
        assert((d[key] as number) > 0, `${d.id} ${key} = ${d[key]}`);
      }
      assert((d.rho as number) > 0 && (d.rho as number) <= 1, `${d.id} rho`);
      const adapter = d.adapter as string;
      assert(adapter.startsWith(dir), `adapter under --out: ${adapter}`);
      for (const f of ["adapter_config.json", "adapter_model.safetensors", "report.json"]) {
        assert((await Deno.stat(`${adapter}/${f}`)).size > 0, `${adapter}/${f} written`);
      }
      const report = JSON.parse(await Deno.readTextFile(d.report as string));
      assertEquals(report.id, d.id);
      // Kill and Revive is on by default: after the warm-up step each device trains ⌈ρ·N⌉
      // modules (probes aside), so the estimated savings are positive.
      const kr = d.kr as Record<string, number | string>;
      assertEquals([kr.policy, kr.budget, kr.modules], ["kr", d.rho, 35]);
      assert((kr.module_steps_frac as number) < 1, `${d.id} module-steps ${kr.module_steps_frac}`);
      assert((kr.kills as number) > 0, `${d.id} kills ${kr.kills}`);
      const saved = d.savings_estimated as Record<string, number>;
      assert(saved.flops > 0 && saved.flops < 1, `${d.id} FLOPs saved ${saved.flops}`);
    }
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/demo.json`));
    assertEquals(summary.devices.length, 3);
    assert(r.stderr.includes("step"), "a progress line per device on stderr");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dlora demo: --kr off trains every module; nothing is saved", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dlora-demo-off-" });
  try {
    const r = await runCli([
      "demo",
      ...["--devices", "1", "--steps", "3", "--batch", "2", "--seq-len", "16"],
      ...["--eval-tokens", "64", "--kr", "off", "--out", dir, "--json"],
    ]);
    assertEquals(r.code, 0, r.stderr);
    const json = r.json as { kr: boolean; devices: Record<string, unknown>[] };
    assertEquals(json.kr, false);
    const d = json.devices[0];
    const kr = d.kr as Record<string, number | string>;
    assertEquals([kr.policy, kr.budget, kr.module_steps_frac], ["all", 1, 1]);
    assertEquals(kr.active_end, kr.modules);
    const saved = d.savings_estimated as Record<string, number>;
    assertEquals([saved.flops, saved.bytes < 0.05], [0, true]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dlora demo: --kr rank grows the kept modules; the adapters carry their ranks", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dlora-demo-rank-" });
  try {
    const r = await runCli([
      "demo",
      ...["--devices", "1", "--steps", "4", "--batch", "2", "--seq-len", "16"],
      ...["--eval-tokens", "64", "--kr", "rank", "--out", dir, "--json"],
    ]);
    assertEquals(r.code, 0, r.stderr);
    const json = r.json as {
      kr: boolean;
      rank_realloc: boolean;
      devices: Record<string, unknown>[];
    };
    assertEquals([json.kr, json.rank_realloc], [true, true]);
    const d = json.devices[0];
    const config = JSON.parse(await Deno.readTextFile(`${d.adapter}/adapter_config.json`));
    const ranks = Object.values(config.rank_pattern) as number[];
    assertEquals(
      ranks.length,
      (d.kr as Record<string, number>).active_end,
      "every kept module grew",
    );
    assert(ranks.every((x) => x > config.r), `grown ranks ${ranks} above r = ${config.r}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dlora demo: flags out of range are usage errors", async () => {
  for (
    const [args, pattern] of [
      [["--devices", "9"], /--devices must be in 1\.\.8/],
      [["--codec", "f8"], /--codec must be one of f32, f16, bf16, int8/],
      [["--kr", "maybe"], /--kr must be on, off or rank/],
    ] as const
  ) {
    const r = await runCli(["demo", ...args]);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert(pattern.test(r.stderr), r.stderr);
  }
});
