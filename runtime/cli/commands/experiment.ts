/**
 * `dlora experiment kr [--quick] [--json] [--out DIR] [--jobs N] [--tasks a,b] [--seeds N]`:
 * issue 5's Kill-and-Revive experiment (runtime/experiment/). Progress goes to stderr; the
 * outputs (report.md, nll_vs_flops.svg, rows.json) to DIR, default out/experiment-kr. Rows
 * already in DIR/rows.json are kept, so running the same command again resumes.
 */
import { TASKS } from "../../experiment/grid.ts";
import { runExperiment } from "../../experiment/experiment.ts";
import { type Flags, optionalInt, UsageError } from "../args.ts";

export const experimentFlags = {
  quick: "boolean",
  out: "string",
  jobs: "number",
  tasks: "string",
  seeds: "number",
} as const;

const EXPERIMENTS = ["kr"];

export async function experimentCommand(flags: Flags): Promise<Record<string, unknown>> {
  const cmd = "experiment";
  const what = flags.what;
  if (what === undefined || !EXPERIMENTS.includes(what as string)) {
    throw new UsageError(
      `${cmd}: name the experiment (${EXPERIMENTS.join(", ")}), e.g. ` +
        `\`deno task dlora experiment kr --quick\`${what ? `; got "${what}"` : ""}`,
    );
  }
  const jobs = optionalInt(flags, "jobs", 2, cmd);
  const seeds = flags.seeds === undefined ? undefined : optionalInt(flags, "seeds", 3, cmd);
  if (seeds !== undefined && seeds > 3) {
    throw new UsageError(`${cmd}: --seeds must be in 1..3, got ${seeds}`);
  }
  let tasks: string[] | undefined;
  if (flags.tasks !== undefined) {
    tasks = String(flags.tasks).split(",").map((t) => t.trim()).filter((t) => t !== "");
    const known = TASKS.map((t) => t.name);
    const bad = tasks.filter((t) => !known.includes(t));
    if (tasks.length === 0 || bad.length > 0) {
      throw new UsageError(
        `${cmd}: --tasks takes a comma list of ${known.join(", ")}; got "${flags.tasks}"`,
      );
    }
  }
  const out = typeof flags.out === "string" && flags.out !== "" ? flags.out : "out/experiment-kr";
  const quick = flags.quick === true;
  const r = await runExperiment({
    quick,
    out,
    jobs,
    tasks,
    seeds,
    command: `deno task dlora experiment kr${quick ? " --quick" : ""}` +
      (tasks ? ` --tasks ${tasks.join(",")}` : "") + (seeds ? ` --seeds ${seeds}` : ""),
    log: (line) => console.error(line),
  });
  return {
    rows: r.rows,
    targets: r.targets,
    rank_targets: r.rankTargets,
    out: r.out,
    files: r.files,
    runs: r.runs,
    resumed: r.resumed,
    ran: r.ran,
    wall_s: +r.wallSeconds.toFixed(2),
  };
}

/** Without --json: the targets and where the files went (the rows are in rows.json). */
export function printExperiment(r: Record<string, unknown>): void {
  const targets = r.targets as { name: string; met: boolean | null; value: string }[];
  const print = (t: { name: string; met: boolean | null; value: string }, tag = "") => {
    const mark = t.met === true ? "met" : t.met === false ? "NOT MET" : "n/a";
    console.log(`[${mark}]${tag} ${t.name}: ${t.value}`);
  };
  for (const t of targets) print(t);
  const rank = r.rank_targets as typeof targets | null;
  for (const t of rank ?? []) print(t, " (+rank)");
  const files = r.files as Record<string, string>;
  console.log(
    `${r.runs} runs (${r.resumed} resumed), ${r.wall_s} s; ${Object.values(files).join(", ")}`,
  );
}
