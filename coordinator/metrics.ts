/**
 * A tiny metrics registry (counters, gauges, histograms) rendered in the Prometheus text
 * exposition format 0.0.4. No dependency and no platform API: the app serves `render()` at
 * /metrics, the step-stream executor records into the same registry.
 */

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels = Record<string, string>;

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface Metric {
  readonly name: string;
  render(): string;
}

function checkName(name: string, labelNames: readonly string[]): void {
  if (!NAME_RE.test(name)) throw new Error(`metric name "${name}" is not a Prometheus name`);
  for (const l of labelNames) {
    if (!LABEL_RE.test(l) || l.startsWith("__") || l === "le") {
      throw new Error(`metric ${name}: label name "${l}" is not allowed`);
    }
  }
}

/** Label values escape backslash, double quote and newline; HELP escapes backslash and newline. */
function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labelText(pairs: [string, string][]): string {
  if (pairs.length === 0) return "";
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`;
}

/** Series of one metric keyed by its label values in the declared label order. */
class Series<T> {
  readonly byKey = new Map<string, { values: string[]; state: T }>();
  constructor(
    readonly metricName: string,
    readonly labelNames: readonly string[],
    readonly init: () => T,
  ) {}

  get(labels: Labels = {}): T {
    const values = this.labelNames.map((l) => {
      const v = labels[l];
      if (v === undefined) {
        throw new Error(`metric ${this.metricName}: label "${l}" is missing`);
      }
      return v;
    });
    for (const k of Object.keys(labels)) {
      if (!this.labelNames.includes(k)) {
        throw new Error(
          `metric ${this.metricName}: unknown label "${k}" (declared: ${
            this.labelNames.join(", ") || "none"
          })`,
        );
      }
    }
    const key = JSON.stringify(values);
    let entry = this.byKey.get(key);
    if (entry === undefined) {
      entry = { values, state: this.init() };
      this.byKey.set(key, entry);
    }
    return entry.state;
  }

  pairs(values: string[]): [string, string][] {
    return this.labelNames.map((l, i) => [l, values[i]]);
  }
}

export class Counter implements Metric {
  private readonly series: Series<{ value: number }>;
  constructor(readonly name: string, readonly help: string, labelNames: readonly string[] = []) {
    checkName(name, labelNames);
    this.series = new Series(name, labelNames, () => ({ value: 0 }));
    if (labelNames.length === 0) this.series.get();
  }

  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name}: cannot increase by ${by}`);
    this.series.get(labels).value += by;
  }

  value(labels: Labels = {}): number {
    return this.series.get(labels).value;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} counter`];
    for (const { values, state } of this.series.byKey.values()) {
      lines.push(`${this.name}${labelText(this.series.pairs(values))} ${formatValue(state.value)}`);
    }
    return lines.join("\n");
  }
}

export class Gauge implements Metric {
  private readonly series: Series<{ value: number }>;
  constructor(readonly name: string, readonly help: string, labelNames: readonly string[] = []) {
    checkName(name, labelNames);
    this.series = new Series(name, labelNames, () => ({ value: 0 }));
    if (labelNames.length === 0) this.series.get();
  }

  set(value: number, labels: Labels = {}): void {
    this.series.get(labels).value = value;
  }

  inc(labels: Labels = {}, by = 1): void {
    this.series.get(labels).value += by;
  }

  dec(labels: Labels = {}, by = 1): void {
    this.series.get(labels).value -= by;
  }

  value(labels: Labels = {}): number {
    return this.series.get(labels).value;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} gauge`];
    for (const { values, state } of this.series.byKey.values()) {
      lines.push(`${this.name}${labelText(this.series.pairs(values))} ${formatValue(state.value)}`);
    }
    return lines.join("\n");
  }
}

interface HistogramState {
  /** Non-cumulative count per bucket; cumulated when rendered. */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram implements Metric {
  private readonly series: Series<HistogramState>;
  readonly buckets: readonly number[];

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
    labelNames: readonly string[] = [],
  ) {
    checkName(name, labelNames);
    const finite = buckets.filter((b) => b !== Infinity);
    for (let i = 0; i < finite.length; i++) {
      if (!Number.isFinite(finite[i]) || (i > 0 && finite[i] <= finite[i - 1])) {
        throw new Error(`histogram ${name}: buckets must be finite and strictly increasing`);
      }
    }
    this.buckets = finite;
    this.series = new Series(name, labelNames, () => ({
      counts: new Array(finite.length + 1).fill(0),
      sum: 0,
      count: 0,
    }));
    if (labelNames.length === 0) this.series.get();
  }

  observe(value: number, labels: Labels = {}): void {
    const s = this.series.get(labels);
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]) i++;
    s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  count(labels: Labels = {}): number {
    return this.series.get(labels).count;
  }

  render(): string {
    const n = this.name;
    const lines = [`# HELP ${n} ${escapeHelp(this.help)}`, `# TYPE ${n} histogram`];
    for (const { values, state } of this.series.byKey.values()) {
      const pairs = this.series.pairs(values);
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += state.counts[i];
        const le = i < this.buckets.length ? formatValue(this.buckets[i]) : "+Inf";
        lines.push(`${n}_bucket${labelText([...pairs, ["le", le]])} ${cumulative}`);
      }
      lines.push(`${n}_sum${labelText(pairs)} ${formatValue(state.sum)}`);
      lines.push(`${n}_count${labelText(pairs)} ${state.count}`);
    }
    return lines.join("\n");
  }
}

export class Registry {
  private readonly metrics = new Map<string, Metric>();

  private add<M extends Metric>(metric: M): M {
    if (this.metrics.has(metric.name)) {
      throw new Error(`metric ${metric.name} is already registered`);
    }
    this.metrics.set(metric.name, metric);
    return metric;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }

  histogram(
    name: string,
    help: string,
    buckets: readonly number[],
    labelNames: readonly string[] = [],
  ): Histogram {
    return this.add(new Histogram(name, help, buckets, labelNames));
  }

  /** The whole registry in the text exposition format (ends with a newline). */
  render(): string {
    return [...this.metrics.values()].map((m) => m.render()).join("\n") + "\n";
  }
}

/** Step latency buckets in seconds: a loopback step is milliseconds, a WAN step seconds. */
export const STEP_SECONDS_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
] as const;

/** The coordinator's metrics: the app records HTTP and errors, the executor the step stream. */
export interface CoordinatorMetrics {
  registry: Registry;
  steps: Counter;
  tokens: Counter;
  /** Labels: direction ("up" = device → coordinator, "down"), type (message type). */
  bytes: Counter;
  stepSeconds: Histogram;
  activeSessions: Gauge;
  /** Label: kind (unauthorized, forbidden, rate_limited, body_too_large, invalid_request, ...). */
  errors: Counter;
  /** Labels: method, route (the route pattern, not the raw path), status. */
  httpRequests: Counter;
  /** Module selection moves. Label: kind (kill, revive, probe, promote, drop). */
  krEvents: Counter;
  /** Modules a device trains now (active and probing), set at each decision. Label: device. */
  krActiveModules: Gauge;
}

export function createCoordinatorMetrics(): CoordinatorMetrics {
  const registry = new Registry();
  return {
    registry,
    steps: registry.counter("dlora_steps_total", "Training steps completed across all sessions."),
    tokens: registry.counter("dlora_tokens_total", "Tokens trained across all sessions."),
    bytes: registry.counter(
      "dlora_bytes_total",
      "Step-stream payload bytes by direction (up = device to coordinator) and message type.",
      ["direction", "type"],
    ),
    stepSeconds: registry.histogram(
      "dlora_step_seconds",
      "Wall time of one training step as seen by the coordinator.",
      STEP_SECONDS_BUCKETS,
    ),
    activeSessions: registry.gauge("dlora_active_sessions", "Device sessions open now."),
    errors: registry.counter("dlora_errors_total", "Refused or failed requests by kind.", [
      "kind",
    ]),
    httpRequests: registry.counter(
      "dlora_http_requests_total",
      "Control-plane HTTP requests by method, route pattern and status.",
      ["method", "route", "status"],
    ),
    krEvents: registry.counter(
      "dlora_kr_events_total",
      "Kill-and-Revive moves by kind (kill, revive, probe, promote, drop).",
      ["kind"],
    ),
    krActiveModules: registry.gauge(
      "dlora_kr_active_modules",
      "LoRA modules a device trains now (active and probing), as of its last decision.",
      ["device"],
    ),
  };
}
