import { assert, assertEquals } from "../../tests/util.ts";
import { niceTicks, renderNllVsFlops, taskSeries } from "./svg.ts";
import { syntheticRow, taskRows } from "./testing.ts";

Deno.test("niceTicks: round steps that cover the range", () => {
  assertEquals(niceTicks(0.3, 1.1, 4), [0.2, 0.4, 0.6, 0.8, 1, 1.2]);
  assertEquals(niceTicks(2.71, 3.02, 3), [2.6, 2.8, 3, 3.2]);
  const flat = niceTicks(5, 5);
  assert(flat[0] < 5 && flat[flat.length - 1] > 5, `a flat range is padded: ${flat}`);
});

Deno.test("taskSeries: all through its lengths, other policies through their budgets", () => {
  const rows = [
    ...taskRows("t", 1),
    syntheticRow({ task: "t", policy: "kr", budget: 0.5, device_flops: 700e6, nll_active: 2.85 }),
    syntheticRow({ task: "t", policy: "random", device_flops: 480e6, nll_active: 3.2 }),
  ];
  const series = taskSeries(rows, "t");
  const all = series.find((s) => s.name === "all")!;
  assertEquals(all.points.map((p) => p.label), ["50 steps", "100 steps", "200 steps"]);
  const kr = series.find((s) => s.name === "kr/change")!;
  assertEquals(kr.points.map((p) => [p.x, p.y]), [[470e6, 2.9], [700e6, 2.85]]);
  assertEquals(series.find((s) => s.name === "random")!.points.length, 1);
});

Deno.test("renderNllVsFlops: a panel per task, a line per policy, axes, ticks and a legend", () => {
  const rows = [
    ...taskRows("a", 1),
    ...taskRows("b", 1),
    syntheticRow({ task: "b", policy: "random", device_flops: 480e6, nll_active: 3.2 }),
  ];
  const svg = renderNllVsFlops(rows, [
    { name: "a", label: "Task A" },
    { name: "b", label: "Task <B>" },
    { name: "c", label: "no runs" },
  ]);
  assert(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
  assertEquals(svg.match(/class="panel"/g)?.length, 2, "task c has no runs: no panel");
  assertEquals(svg.match(/<polyline/g)?.length, 5, "a: all, kr; b: all, kr, random");
  assert(svg.includes("Task &lt;B&gt;"), "labels are escaped");
  assert(svg.includes("device FLOPs") && svg.includes("held-out NLL"), "axis titles");
  assertEquals(svg.match(/class="legend"/g)?.length, 3, "all, kr/change, random");
  // Every point of `all` in panel a lies inside the plot area.
  const a = svg.slice(svg.indexOf('data-task="a"'), svg.indexOf('data-task="b"'));
  const pts = a.match(/data-name="all" points="([^"]+)"/)![1].split(" ").map((p) =>
    p.split(",").map(Number)
  );
  assertEquals(pts.length, 3);
  for (const [x, y] of pts) {
    assert(x >= 58 && x <= 440 - 16 && y >= 30 && y <= 330 - 46, `${x},${y}`);
  }
  // NLL grows upwards: the full run (lowest NLL) is drawn below the shortest, to its right.
  assert(pts[2][1] > pts[0][1] && pts[2][0] > pts[0][0], `${pts}`);
  assertEquals(svg.split("<g").length, svg.split("</g>").length, "groups balanced");
});
