/**
 * nll_vs_flops.svg: held-out NLL against device FLOPs, one panel per task, one line per policy
 * (KR once per score, bf16 apart), means over seeds. `all` is drawn through its runs of different
 * lengths; the other lines go through their budgets. Hand-written SVG, no dependencies.
 */
import { groupRows, type Row } from "./aggregate.ts";

export interface Point {
  x: number;
  y: number;
  /** Shown beside the point (e.g. "ρ=0.25", "50 steps"). */
  label: string;
}

export interface Series {
  name: string;
  points: Point[];
}

/** A policy's line label: "kr/effective", "kr/change bf16", "oneshot +rank", "all". */
export function seriesName(
  r: { policy: string; score: string | null; codec: string; rank?: "budget" | null },
): string {
  const base = (r.policy === "kr" ? `kr/${r.score}` : r.policy) + (r.rank ? " +rank" : "");
  return r.codec === "f32" ? base : `${base} ${r.codec}`;
}

/** The lines of one task's panel, points sorted by FLOPs. */
export function taskSeries(rows: readonly Row[], task: string): Series[] {
  const mine = rows.filter((r) => r.task === task);
  if (mine.length === 0) return [];
  const full = Math.max(...mine.map((r) => r.steps));
  const series = new Map<string, Point[]>();
  for (const g of groupRows(mine)) {
    // Shorter runs of the other policies (none in the grid) would not be a budget line.
    if (g.policy !== "all" && g.steps !== full) continue;
    const name = seriesName(g);
    const label = g.policy === "all" ? `${g.steps} steps` : `ρ=${g.budget}`;
    const y = g.policy === "all" ? g.nllAll : g.nllActive;
    series.set(name, [...(series.get(name) ?? []), { x: g.deviceFlops, y, label }]);
  }
  return [...series.entries()].map(([name, points]) => ({
    name,
    points: points.sort((a, b) => a.x - b.x),
  }));
}

/** About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 × 10^k). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.05 || 1;
    return niceTicks(lo - pad, lo + pad, count);
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const first = Math.floor(lo / step) * step, last = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let t = first; t <= last + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

const COLORS = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#9467bd",
  "#ff7f0e",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#7f7f7f",
];

const esc = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    '"',
    "&quot;",
  );

const fmtTick = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : +v.toPrecision(3)).toString();

/** One SVG with a panel per task; colours are kept per series name across panels. */
export function renderNllVsFlops(
  rows: readonly Row[],
  tasks: readonly { name: string; label: string }[],
): string {
  const W = 440, H = 330, M = { left: 58, right: 16, top: 30, bottom: 46 };
  const panels = tasks.map((t) => ({ task: t, series: taskSeries(rows, t.name) }))
    .filter((p) => p.series.length > 0);
  const names = [...new Set(panels.flatMap((p) => p.series.map((s) => s.name)))].sort((a, b) =>
    a === "all" ? -1 : b === "all" ? 1 : a.localeCompare(b)
  );
  const color = (n: string) => COLORS[names.indexOf(n) % COLORS.length];
  const width = Math.max(1, panels.length) * W;
  const perRow = Math.max(1, Math.floor((width - 20) / 140));
  const height = H + 18 * Math.ceil(names.length / perRow) + 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  if (panels.length === 0) {
    out.push(`<text x="20" y="40">no runs to plot</text>`);
  }
  panels.forEach((p, i) => {
    const ox = i * W;
    const pts = p.series.flatMap((s) => s.points);
    const GF = 1e9;
    const xt = niceTicks(
      Math.min(...pts.map((q) => q.x / GF)),
      Math.max(...pts.map((q) => q.x / GF)),
    );
    const yt = niceTicks(Math.min(...pts.map((q) => q.y)), Math.max(...pts.map((q) => q.y)));
    const [x0, x1, y0, y1] = [xt[0], xt[xt.length - 1], yt[0], yt[yt.length - 1]];
    const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
    const sx = (v: number) => ox + M.left + (v / GF - x0) / (x1 - x0) * pw;
    const sy = (v: number) => M.top + ph - (v - y0) / (y1 - y0) * ph;
    out.push(`<g class="panel" data-task="${esc(p.task.name)}">`);
    out.push(
      `<text x="${ox + M.left + pw / 2}" y="18" text-anchor="middle" font-size="13" ` +
        `font-weight="bold">${esc(p.task.label)}</text>`,
    );
    // Axes, grid lines and ticks.
    out.push(
      `<line x1="${ox + M.left}" y1="${M.top + ph}" x2="${ox + M.left + pw}" y2="${M.top + ph}" ` +
        `stroke="black"/>`,
      `<line x1="${ox + M.left}" y1="${M.top}" x2="${ox + M.left}" y2="${M.top + ph}" ` +
        `stroke="black"/>`,
    );
    for (const t of xt) {
      const x = sx(t * GF).toFixed(1);
      out.push(
        `<line x1="${x}" y1="${M.top}" x2="${x}" y2="${M.top + ph}" stroke="#eee"/>`,
        `<line x1="${x}" y1="${M.top + ph}" x2="${x}" y2="${M.top + ph + 4}" stroke="black"/>`,
        `<text x="${x}" y="${M.top + ph + 16}" text-anchor="middle">${fmtTick(t)}</text>`,
      );
    }
    for (const t of yt) {
      const y = sy(t).toFixed(1);
      out.push(
        `<line x1="${ox + M.left}" y1="${y}" x2="${ox + M.left + pw}" y2="${y}" stroke="#eee"/>`,
        `<line x1="${ox + M.left - 4}" y1="${y}" x2="${ox + M.left}" y2="${y}" stroke="black"/>`,
        `<text x="${ox + M.left - 7}" y="${y}" text-anchor="end" dominant-baseline="middle">${
          fmtTick(t)
        }</text>`,
      );
    }
    out.push(
      `<text x="${ox + M.left + pw / 2}" y="${H - 8}" text-anchor="middle">device FLOPs ` +
        `(GFLOP, total)</text>`,
      `<text transform="translate(${ox + 14} ${M.top + ph / 2}) rotate(-90)" ` +
        `text-anchor="middle">held-out NLL (nats/token)</text>`,
    );
    for (const s of p.series) {
      const c = color(s.name);
      const d = s.points.map((q) => `${sx(q.x).toFixed(1)},${sy(q.y).toFixed(1)}`).join(" ");
      out.push(
        `<polyline class="series" data-name="${esc(s.name)}" points="${d}" fill="none" ` +
          `stroke="${c}" stroke-width="1.8"/>`,
      );
      for (const q of s.points) {
        out.push(
          `<circle cx="${sx(q.x).toFixed(1)}" cy="${sy(q.y).toFixed(1)}" r="3" fill="${c}">` +
            `<title>${
              esc(`${s.name} ${q.label}: NLL ${q.y.toFixed(4)}, ${(q.x / GF).toFixed(2)} GFLOP`)
            }</title></circle>`,
        );
      }
    }
    out.push(`</g>`);
  });
  names.forEach((n, i) => {
    const x = 20 + (i % perRow) * 140, y = H + 6 + 18 * Math.floor(i / perRow);
    out.push(
      `<g class="legend"><line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${
        color(n)
      }" stroke-width="2.5"/>`,
      `<text x="${x + 28}" y="${y}" dominant-baseline="middle">${esc(n)}</text></g>`,
    );
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
