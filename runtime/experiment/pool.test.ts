import { assert, assertEquals, assertRejects } from "../../tests/util.ts";
import { EXPERIMENT_JOB, runId, type RunSpec } from "./grid.ts";
import { runPool } from "./pool.ts";

const spec = (seed: number): RunSpec => ({
  task: "tinyshakespeare",
  policy: "all",
  score: null,
  budget: null,
  seed,
  steps: 200,
  codec: "f32",
});

Deno.test("pool: a failed run is reported, a crashed worker is replaced, every other run still runs", async () => {
  // One slot, so the runs after the crash must go to a new worker.
  const specs = [1, 3, 1, 2, 1].map((seed, i) => ({ ...spec(seed), steps: 200 + i }));
  const seen: string[] = [], errors: string[] = [];
  const r = await runPool(specs, {
    jobs: 1,
    shape: EXPERIMENT_JOB,
    workerUrl: new URL("./pool_testing_worker.ts", import.meta.url),
    onRow: (_row, s) => void seen.push(runId(s)),
    onError: (s, message) => void errors.push(`${runId(s)}: ${message}`),
  });
  assertEquals(r.rows.length, 3, "the three good runs, two of them after the crash");
  assertEquals(seen, [specs[0], specs[2], specs[4]].map(runId));
  assertEquals(r.failed.map((f) => f.id), [runId(specs[1]), runId(specs[3])]);
  assert(/^worker crashed: .*crash on/.test(r.failed[0].message), r.failed[0].message);
  assertEquals(r.failed[1].message, `run ${runId(specs[3])} failed`);
  assertEquals(errors.length, 2);
});

Deno.test("pool: jobs must be a positive integer", async () => {
  await assertRejects(() => runPool([spec(1)], { jobs: 0, shape: EXPERIMENT_JOB }), /jobs must be/);
});
