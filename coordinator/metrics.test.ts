import { assert, assertEquals, assertThrows } from "../tests/util.ts";
import { checkHistogram, parsePrometheus } from "./testing.ts";
import { createCoordinatorMetrics, formatValue, Registry } from "./metrics.ts";

Deno.test("metrics: counters, gauges and labels render and parse", () => {
  const r = new Registry();
  const c = r.counter("dlora_test_total", "A counter.\nSecond line with \\ backslash.", ["kind"]);
  const g = r.gauge("dlora_test_gauge", "A gauge.");
  c.inc({ kind: "a" });
  c.inc({ kind: 'b"q\\\nx' }, 2.5);
  g.set(7);
  g.dec();
  const fams = parsePrometheus(r.render());
  const counter = fams.get("dlora_test_total")!;
  assertEquals(counter.type, "counter");
  assertEquals(counter.help, "A counter.\\nSecond line with \\\\ backslash.");
  assertEquals(counter.samples.map((s) => [s.labels.kind, s.value]), [["a", 1], ['b"q\\\nx', 2.5]]);
  assertEquals(fams.get("dlora_test_gauge")!.samples[0].value, 6);
  assertEquals(c.value({ kind: "a" }), 1);
});

Deno.test("metrics: histogram buckets are cumulative with _sum and _count", () => {
  const r = new Registry();
  const h = r.histogram("dlora_lat_seconds", "Latency.", [0.1, 0.5, 1], ["route"]);
  for (const v of [0.05, 0.1, 0.2, 0.7, 3, 3]) h.observe(v, { route: "/x" });
  const text = r.render();
  const fam = parsePrometheus(text).get("dlora_lat_seconds")!;
  assertEquals(fam.type, "histogram");
  checkHistogram(fam, "dlora_lat_seconds");
  const bucket = (le: string) =>
    fam.samples.find((s) => s.name.endsWith("_bucket") && s.labels.le === le)!.value;
  // le is inclusive: 0.1 falls in the 0.1 bucket.
  assertEquals([bucket("0.1"), bucket("0.5"), bucket("1"), bucket("+Inf")], [2, 3, 4, 6]);
  assert(text.includes('dlora_lat_seconds_bucket{route="/x",le="+Inf"} 6'), text);
  assert(text.includes('dlora_lat_seconds_sum{route="/x"} 7.05'), text);
  assert(text.includes('dlora_lat_seconds_count{route="/x"} 6'), text);
});

Deno.test("metrics: the coordinator registry parses, unlabelled series start at 0", () => {
  const m = createCoordinatorMetrics();
  m.steps.inc();
  m.tokens.inc({}, 2048);
  m.bytes.inc({ direction: "up", type: "lora_out" }, 4096);
  m.stepSeconds.observe(0.042);
  m.activeSessions.inc();
  m.errors.inc({ kind: "unauthorized" });
  const fams = parsePrometheus(m.registry.render());
  for (
    const name of [
      "dlora_steps_total",
      "dlora_tokens_total",
      "dlora_bytes_total",
      "dlora_step_seconds",
      "dlora_active_sessions",
      "dlora_errors_total",
      "dlora_http_requests_total",
    ]
  ) assert(fams.has(name), `${name} is exposed`);
  checkHistogram(fams.get("dlora_step_seconds")!, "dlora_step_seconds");
  assertEquals(fams.get("dlora_tokens_total")!.samples[0].value, 2048);
  assertEquals(fams.get("dlora_bytes_total")!.samples[0].labels, {
    direction: "up",
    type: "lora_out",
  });
  // A fresh registry still shows its unlabelled series, so dashboards see 0 rather than gaps.
  const fresh = parsePrometheus(createCoordinatorMetrics().registry.render());
  assertEquals(fresh.get("dlora_steps_total")!.samples[0].value, 0);
});

Deno.test("metrics: misuse is reported with the metric's name", () => {
  const r = new Registry();
  const c = r.counter("dlora_x_total", "x", ["kind"]);
  assertThrows(() => r.counter("dlora_x_total", "again"), /already registered/);
  assertThrows(() => c.inc({}), /label "kind" is missing/);
  assertThrows(() => c.inc({ kind: "a", other: "b" }), /unknown label "other"/);
  assertThrows(() => c.inc({ kind: "a" }, -1), /cannot increase by -1/);
  assertThrows(() => r.gauge("bad-name", "x"), /not a Prometheus name/);
  assertThrows(() => r.histogram("dlora_h", "x", [1, 1]), /strictly increasing/);
  assertThrows(() => r.histogram("dlora_h2", "x", [1], ["le"]), /label name "le"/);
  assertEquals([formatValue(Infinity), formatValue(-Infinity), formatValue(NaN)], [
    "+Inf",
    "-Inf",
    "NaN",
  ]);
});
