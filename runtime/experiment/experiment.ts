/**
 * `dlora experiment kr`: runs the grid (or what is left of it: rows already in DIR/rows.json are
 * kept), then writes DIR/rows.json, DIR/report.md and DIR/nll_vs_flops.svg. rows.json is
 * rewritten after every finished run, so a stopped experiment resumes where it stopped.
 */
import { joinPath } from "../formats/io.ts";
import { evaluateTargets, type Row, type TargetResult } from "./aggregate.ts";
import {
  buildGrid,
  EXPERIMENT_JOB,
  type ExperimentShape,
  fullGridOptions,
  type GridOptions,
  quickGridOptions,
  quickShape,
  runId,
  type RunSpec,
  taskByName,
  TASKS,
} from "./grid.ts";
import { runPool } from "./pool.ts";
import { renderReport } from "./report.ts";
import { renderNllVsFlops } from "./svg.ts";

export interface ExperimentOptions {
  quick?: boolean;
  out: string;
  /** Runs in parallel (workers), default 2. */
  jobs?: number;
  /** Only these tasks (default: the grid's). */
  tasks?: string[];
  /** Only the first `seeds` seeds of the grid. */
  seeds?: number;
  /** The command line, for the report. */
  command?: string;
  log?: (line: string) => void;
}

export interface ExperimentResult {
  rows: Row[];
  targets: TargetResult[];
  /** The targets judged on the runs with rank reallocation (none when the grid has none). */
  rankTargets: TargetResult[] | null;
  out: string;
  files: { report: string; svg: string; rows: string };
  /** Runs in the grid, runs kept from an earlier rows.json, runs done now. */
  runs: number;
  resumed: number;
  ran: number;
  wallSeconds: number;
}

export interface ExperimentPlan {
  shape: ExperimentShape;
  grid: GridOptions;
  runs: RunSpec[];
}

export function planExperiment(o: { quick?: boolean; tasks?: string[]; seeds?: number }) {
  const shape = o.quick ? quickShape(EXPERIMENT_JOB) : EXPERIMENT_JOB;
  const grid = o.quick ? quickGridOptions(shape) : fullGridOptions(shape);
  if (o.tasks) {
    for (const t of o.tasks) taskByName(t);
    grid.tasks = o.tasks;
  }
  if (o.seeds !== undefined) {
    if (!Number.isInteger(o.seeds) || o.seeds < 1 || o.seeds > grid.seeds.length) {
      throw new RangeError(`seeds must be an integer in 1..${grid.seeds.length}, got ${o.seeds}`);
    }
    grid.seeds = grid.seeds.slice(0, o.seeds);
  }
  return { shape, grid, runs: buildGrid(grid) };
}

interface RowsFile {
  config: { shape: ExperimentShape };
  rows: Row[];
  targets?: TargetResult[];
}

/** Rows of an earlier run of the same job shape in `path`; none when there is no such file. */
export async function readRowsFile(path: string, shape: ExperimentShape): Promise<Row[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  let file: RowsFile;
  try {
    file = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not JSON (${(e as Error).message}); remove it or use another --out`);
  }
  if (!Array.isArray(file.rows)) {
    throw new Error(`${path}: no "rows" array; remove it or use another --out`);
  }
  if (JSON.stringify(file.config?.shape) !== JSON.stringify(shape)) {
    throw new Error(
      `${path} holds runs of a different job shape (${JSON.stringify(file.config?.shape)}); ` +
        `its rows cannot be resumed: remove it or use another --out`,
    );
  }
  return file.rows;
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

const fmtDuration = (s: number) =>
  s >= 90
    ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`
    : `${s.toFixed(0)}s`;

export async function runExperiment(o: ExperimentOptions): Promise<ExperimentResult> {
  const started = performance.now();
  const log = o.log ?? (() => {});
  const plan = planExperiment(o);
  const { shape, grid, runs } = plan;
  await Deno.mkdir(o.out, { recursive: true });
  const files = {
    report: joinPath(o.out, "report.md"),
    svg: joinPath(o.out, "nll_vs_flops.svg"),
    rows: joinPath(o.out, "rows.json"),
  };
  const order = new Map(runs.map((r, i) => [runId(r), i]));
  const saved = await readRowsFile(files.rows, shape);
  const earlier = saved.filter((r) => r.id !== undefined && order.has(r.id));
  // Rows of runs outside this grid (e.g. other seeds than --seeds asks for) stay in the file.
  const others = saved.filter((r) => !(r.id !== undefined && order.has(r.id)));
  const done = new Set(earlier.map((r) => r.id!));
  const todo = runs.filter((r) => !done.has(runId(r)));
  const rows = [...earlier];
  const sorted = () => [...rows].sort((a, b) => (order.get(a.id!) ?? 0) - (order.get(b.id!) ?? 0));
  const save = (targets?: TargetResult[]) =>
    writeAtomic(
      files.rows,
      JSON.stringify(
        { config: { shape }, rows: [...sorted(), ...others], targets } satisfies RowsFile,
      ) + "\n",
    );
  log(
    `experiment kr${o.quick ? " --quick" : ""}: ${runs.length} runs (${earlier.length} already ` +
      `in ${files.rows}), ${todo.length} to do on ${o.jobs ?? 2} worker(s); job ${shape.model} ` +
      `rank ${shape.rank}, batch ${shape.batch}×${shape.seqLen}, ${shape.steps} steps`,
  );

  // Saves run one after another, whichever worker finishes.
  let saving = Promise.resolve();
  let finished = 0;
  const poolStart = performance.now();
  const result = await runPool(todo, {
    jobs: o.jobs ?? 2,
    shape,
    onRow: (row) => {
      rows.push(row);
      finished++;
      const elapsed = (performance.now() - poolStart) / 1000;
      const eta = elapsed / finished * (todo.length - finished);
      log(
        `[${finished}/${todo.length}] ${row.id}: NLL ${row.nll_active.toFixed(4)} active / ` +
          `${row.nll_all.toFixed(4)} all, ${(row.device_flops / 1e9).toFixed(2)} GFLOP, ` +
          `${((row.bytes_up + row.bytes_down) / 1e6).toFixed(1)} MB, ${row.wall_s.toFixed(1)} s` +
          (finished < todo.length ? ` (eta ${fmtDuration(eta)})` : ""),
      );
      saving = saving.then(() => save());
      return saving;
    },
    onError: (spec, message) => log(`run ${runId(spec)} failed: ${message}`),
  });
  await saving;

  const all = sorted();
  const targets = evaluateTargets(all, { defaultScore: shape.defaultScore });
  const rankTargets = all.some((r) => r.rank === "budget")
    ? evaluateTargets(all, { defaultScore: shape.defaultScore, rank: "budget" })
    : undefined;
  const data: Record<string, { trainTokens: number; heldOutTokens: number }> = {};
  for (const r of all) {
    if (typeof r.train_tokens === "number" && typeof r.eval_tokens === "number") {
      data[r.task] = { trainTokens: r.train_tokens, heldOutTokens: r.eval_tokens };
    }
  }
  const tasks = grid.tasks.map((t) => TASKS.find((x) => x.name === t)!);
  const wallSeconds = (performance.now() - started) / 1000;
  await save(targets);
  await Deno.writeTextFile(
    files.report,
    renderReport(all, {
      command: o.command ?? `deno task dlora experiment kr${o.quick ? " --quick" : ""}`,
      shape,
      tasks,
      targets,
      ...(rankTargets ? { rankTargets } : {}),
      data,
      allFractions: grid.allFractions,
      wallSeconds: result.failed.length === 0 && earlier.length === 0 ? wallSeconds : undefined,
      date: new Date().toISOString().slice(0, 10),
    }),
  );
  await Deno.writeTextFile(files.svg, renderNllVsFlops(all, tasks));
  if (result.failed.length > 0) {
    throw new Error(
      `${result.failed.length} of ${todo.length} runs failed (${
        result.failed.map((f) => `${f.id}: ${f.message}`).join("; ")
      }); the ${all.length} finished runs are in ${files.rows}: run the same command again to ` +
        `retry only the missing ones`,
    );
  }
  return {
    rows: all,
    targets,
    rankTargets: rankTargets ?? null,
    out: o.out,
    files,
    runs: runs.length,
    resumed: earlier.length,
    ran: result.rows.length,
    wallSeconds,
  };
}
