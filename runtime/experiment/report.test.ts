import { assert } from "../../tests/util.ts";
import { evaluateTargets } from "./aggregate.ts";
import { EXPERIMENT_JOB } from "./grid.ts";
import { renderReport, summaryTable, targetsSection, taskTable } from "./report.ts";
import { syntheticRow, taskRows } from "./testing.ts";

Deno.test("taskTable: one line per configuration with NLL, FLOPs, bytes and savings", () => {
  const rows = [...taskRows("t", 1), ...taskRows("t", 2, { nll_active: 3.1 })];
  const lines = taskTable(rows, "t").split("\n");
  assert(lines.length === 2 + 4, lines.join("\n"));
  const kr = lines.find((l) => l.startsWith("| kr "))!;
  // NLL active mean 3.0, gap +7.14%, 0.47 GFLOP, saved 53.0% total / 88.3% LoRA, 88% comm.
  for (const s of ["3.0000", "+7.14%", "0.47", "53.0% / 88.3%", "12.0", "88.0%", "| 2 |"]) {
    assert(kr.includes(s), `${s} in ${kr}`);
  }
  assert(lines[2].startsWith("| all | – | – | f32 | 200 |"), "all first, full length first");
});

Deno.test("renderReport: job, data, targets with met / not met, a table per task, the plot", () => {
  const rows = [...taskRows("a", 1), ...taskRows("b", 1)];
  const targets = evaluateTargets(rows, { defaultScore: "change" });
  const md = renderReport(rows, {
    command: "deno task dlora experiment kr",
    shape: EXPERIMENT_JOB,
    tasks: [{ name: "a", label: "Task A" }, { name: "b", label: "Task B" }, {
      name: "c",
      label: "Task C",
    }],
    targets,
    data: { a: { trainTokens: 1000, heldOutTokens: 100 } },
    allFractions: [0.25, 0.5],
    wallSeconds: 90,
  });
  assert(md.includes("## Targets"));
  assert(md.includes("**met**") && md.includes("**not met**") && md.includes("n/a"));
  assert(md.includes("## Task A (`a`)") && md.includes("## Task B (`b`)"));
  assert(!md.includes("Task C"), "a task without runs gets no section");
  assert(md.includes("25%, 50% of the steps"), "the equal-FLOPs method is stated");
  assert(md.includes("20,000 tokens"), "the held-out cap is stated");
  assert(md.includes("nll_vs_flops.svg"));
  assert(targetsSection(targets).split("\n").length === 2 + targets.length);
});

Deno.test("summaryTable: a line per configuration, a NLL column per task, savings over tasks", () => {
  const rows = [
    ...taskRows("a", 1),
    ...taskRows("b", 1, { nll_active: 3.0, bytes_up: 2e6, bytes_down: 2e6 }),
    syntheticRow({ task: "a", policy: "random", nll_active: 3.5 }),
  ];
  const lines = summaryTable(rows, [{ name: "a", label: "A" }, { name: "b", label: "B" }])
    .split("\n");
  assert(lines[0].includes("NLL a | NLL b"), lines[0]);
  assert(lines.length === 2 + 3, "all (full length only), kr, random:\n" + lines.join("\n"));
  const kr = lines.find((l) => l.startsWith("| kr "))!;
  // comm saved: (88% + 98%) / 2 = 93%.
  assert(kr.includes("| 2.900 | 3.000 |") && kr.includes("93.0%"), kr);
  const random = lines.find((l) => l.startsWith("| random "))!;
  assert(random.includes("| 3.500 | – |"), random);
});
