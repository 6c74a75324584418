/**
 * A job with Kill and Revive over the real WebSocket stack: the device's accounting (FLOPs by
 * kind, bytes by type, module-steps, events), the adapter export recording the active modules,
 * the job inspection and metrics, and an operator re-tier reaching the running session.
 */
import { assert, assertEquals } from "../../tests/util.ts";
import { sharedText, startStack } from "../../coordinator/step_testing.ts";
import { budgetCount } from "../../coordinator/scheduler/policy.ts";
import { allModuleKeys } from "../../coordinator/session.ts";
import { type Proj, projDims, PROJS } from "../model/modules.ts";
import { loadStories } from "../model/testing.ts";
import { deviceResultJson, runDevice } from "./device.ts";

const N = loadStories().config.nLayers * PROJS.length;

Deno.test("device kr: accounting sums, events, export of the active modules, job inspection, metrics and a re-tier", async () => {
  const stack = await startStack();
  const out = await Deno.makeTempDir({ prefix: "dlora-kr-" });
  try {
    const d = await stack.device("kr");
    assertEquals((await stack.call("PATCH", `/v1/devices/${d.id}`, { tier: "B" })).status, 200);
    const jobId = await stack.job({
      rank: 2,
      batch: 1,
      seq_len: 16,
      steps: 14,
      kr: {
        policy: "kr",
        warmup: 2,
        period: 2,
        probe: 1,
        revive_fraction: 0.5,
        score: "effective",
      },
      devices: [d.id],
    });
    let retier: Promise<unknown> | null = null;
    const r = await runDevice({
      coordinatorUrl: stack.url,
      token: d.token,
      text: sharedText("tinyshakespeare.txt", 4000),
      out,
      onStep: (s) => {
        if (s.step === 3) retier = stack.call("PATCH", `/v1/devices/${d.id}`, { tier: "A" });
      },
    });
    await retier;
    assertEquals(r.errors, [], "no refused frames");

    // Accounting: module-steps below N·steps, FLOPs by kind and bytes by type add up.
    assertEquals(r.moduleStepsAll, N * 14);
    assert(r.moduleSteps < 0.7 * r.moduleStepsAll, `${r.moduleSteps} of ${r.moduleStepsAll}`);
    assert(r.moduleSteps >= 2 * N + 12 * budgetCount(0.25, N));
    const json = deviceResultJson(r);
    const kinds = json.flops_by_kind as Record<string, number>;
    assertEquals(Object.values(kinds).reduce((a, b) => a + b, 0), json.flops);
    for (const kind of ["lora_forward", "lora_backward", "optimizer", "head"]) {
      assert(kinds[kind] > 0, kind);
    }
    const byType = json.bytes_by_type as Record<string, { bytes_up: number; bytes_down: number }>;
    const up = Object.values(byType).reduce((a, b) => a + b.bytes_up, 0);
    const down = Object.values(byType).reduce((a, b) => a + b.bytes_down, 0);
    assertEquals([up, down], [r.bytesUp, r.bytesDown]);
    assert(byType.SCORES.bytes_up > 0 && byType.SELECT.bytes_down > 0);
    assertEquals(json.module_steps, r.moduleSteps);

    // Events: N − ⌈0.25·N⌉ kills at the first decision, the same moves as the job shows.
    const kills = r.selectionEvents.filter((e) => e.step === 2 && e.kind === "kill");
    assertEquals(kills.length, N - budgetCount(0.25, N));
    const job = (await stack.call("GET", `/v1/jobs/${jobId}`)).json;
    assertEquals(job.kr, {
      policy: "kr",
      warmup: 2,
      period: 2,
      probe: 1,
      revive_fraction: 0.5,
      mode: "topk",
      tau: null,
      export: "active",
      score: "effective",
      budget: null,
      budget_over: "count",
      lr_scale: 2,
      rank_scale: 1,
    });
    const sel = (job.selection as Record<string, Record<string, unknown>>)[d.id];
    assertEquals(sel.events, r.selectionEvents);
    assertEquals(sel.active, r.activeModules);
    assertEquals(sel.active_modules, r.activeModules.length);
    const own = (await stack.call("GET", `/v1/jobs/${jobId}`, undefined, d.token)).json;
    assertEquals(Object.keys(own.selection as object), [d.id], "a device sees its own selection");
    // The re-tier (after step 3 of 14) reached the session: the last decision ran at tier A.
    assertEquals([sel.tier, sel.budget], ["A", { rho: 0.5 }]);
    assertEquals(r.activeModules.length, budgetCount(0.5, N));

    // Export "active": exactly the final active modules, recorded in adapter_config.json.
    assertEquals(r.exported, "active");
    assertEquals([...r.adapter.modules.keys()].sort(), [...r.activeModules].sort());
    const config = JSON.parse(await Deno.readTextFile(`${out}/adapter_config.json`));
    assertEquals(config.dlora, { active_modules: r.activeModules, exported: "active" });
    assertEquals(r.adapter.metadata!.dlora_active_modules, r.activeModules.join(","));

    // Metrics: kill/revive counters and the active-modules gauge.
    assertEquals(
      stack.metrics.krEvents.value({ kind: "kill" }),
      r.selectionEvents.filter((e) => e.kind === "kill").length,
    );
    assertEquals(stack.metrics.krActiveModules.value({ device: d.id }), r.activeModules.length);
  } finally {
    await stack.close();
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("device kr: rank reallocation over the real stack grows the kept modules and exports rank_pattern", async () => {
  const stack = await startStack();
  const out = await Deno.makeTempDir({ prefix: "dlora-kr-rank-" });
  try {
    const d = await stack.device("kr-rank");
    assertEquals((await stack.call("PATCH", `/v1/devices/${d.id}`, { tier: "C" })).status, 200);
    const jobId = await stack.job({
      rank: 2,
      batch: 1,
      seq_len: 16,
      steps: 6,
      kr: { policy: "oneshot", warmup: 2, score: "effective", rank_scale: "budget" },
      devices: [d.id],
    });
    assertEquals(
      ((await stack.call("GET", `/v1/jobs/${jobId}`)).json.kr as { rank_scale: unknown })
        .rank_scale,
      "budget",
    );
    const r = await runDevice({
      coordinatorUrl: stack.url,
      token: d.token,
      text: sharedText("tinyshakespeare.txt", 4000),
      out,
    });
    assertEquals(r.errors, [], "no refused frames");
    // ρ = 0.125 of the 35 modules stay; they grow to the rank at which they hold all's
    // parameters: 2 · Σ_all (in+out) / Σ_kept (in+out), each capped at min(in, out).
    const c = loadStories().config;
    const io = (m: string) => {
      const { inDim, outDim } = projDims(c, m.split(".")[1] as Proj);
      return [inDim, outDim];
    };
    const kept = r.activeModules;
    assertEquals(kept.length, budgetCount(0.125, N));
    const all = allModuleKeys(c, PROJS).reduce((a, m) => a + io(m)[0] + io(m)[1], 0);
    const sumKept = kept.reduce((a, m) => a + io(m)[0] + io(m)[1], 0);
    const want = Math.floor((2 * all) / sumKept);
    assert(want > 2, `kept modules grow (rank ${want})`);
    for (const m of kept) {
      const mod = r.adapter.modules.get(m)!;
      assertEquals(mod.rank, Math.min(want, ...io(m)), `${m} rank`);
      assertEquals(mod.scale, 1, "s stays alpha / the job's rank (alpha defaults to the rank)");
    }
    const config = JSON.parse(await Deno.readTextFile(`${out}/adapter_config.json`));
    assertEquals(Object.keys(config.rank_pattern).length, kept.length);
    // PEFT computes lora_alpha / r per module: alpha_pattern keeps s = 1.
    for (const [name, rank] of Object.entries(config.rank_pattern)) {
      assertEquals(config.alpha_pattern[name], rank);
    }
  } finally {
    await stack.close();
    await Deno.remove(out, { recursive: true });
  }
});
