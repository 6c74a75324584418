/**
 * The demo's private data (DLORA.md §7): shared data sets found the way models are (`datasets/`
 * under the resolver's search roots: $DLORA_HOME, ./.dlora, ../shared from the working directory
 * and from the repository root), and each device's own train / held-out split of its source.
 */
import { examplesToText, parseData } from "../data/text.ts";
import { exists, joinPath } from "../formats/io.ts";
import { type ResolveOptions, searchRoots } from "../resolve.ts";

/** A data set file by its path under `datasets/` (e.g. "austen/prideprejudice.txt"). */
export async function resolveDataset(name: string, opts: ResolveOptions = {}): Promise<string> {
  const roots = searchRoots(opts);
  for (const root of roots) {
    const path = joinPath(root, "datasets", name);
    if (await exists(path)) return path;
  }
  throw new Error(
    `data set ${name} not found; looked in ${
      roots.map((r) => joinPath(r, "datasets")).join(", ")
    } (put it in $DLORA_HOME/datasets/ or ../shared/datasets/)`,
  );
}

export interface DataSource {
  /** Short name shown in the demo's table. */
  name: string;
  /** Path under `datasets/`. */
  file: string;
  /** Use only the first `lines` examples of a .tsv/.jsonl (SST-2 has 67k). */
  lines?: number;
}

/** The demo's three private data sets: a device of each kind, in this order. */
export const DEMO_SOURCES: readonly DataSource[] = [
  { name: "tinyshakespeare", file: "tinyshakespeare.txt" },
  { name: "austen-pride", file: "austen/prideprejudice.txt" },
  { name: "sst2-sentences", file: "sst2/train.tsv", lines: 4000 },
];

/** A source's text: examples (sentences for SST-2, labels dropped) joined by newlines. */
export async function readSource(source: DataSource, opts: ResolveOptions = {}): Promise<string> {
  const path = await resolveDataset(source.file, opts);
  let examples = parseData(path, await Deno.readTextFile(path));
  if (source.lines !== undefined) examples = examples.slice(0, source.lines);
  const text = examplesToText(examples);
  if (text.length === 0) throw new Error(`data set ${source.file} holds no text`);
  return text;
}

/**
 * Splits `text` (at most `maxChars` of it, taken from the start) into train and held-out parts:
 * the held-out part is a `heldOut` fraction starting at fold `fold` of the 1/heldOut folds
 * (fold 0 = the end of the text, fold 1 the slice before it, …), cut at line boundaries, so
 * devices reusing a source in a round-robin get different splits. The parts share no line.
 */
export function splitFold(
  text: string,
  opts: { heldOut: number; fold: number; maxChars?: number },
): { train: string; heldOut: string } {
  const { heldOut, fold } = opts;
  if (!(heldOut > 0 && heldOut < 1)) throw new RangeError("held-out fraction must be in (0, 1)");
  const t = opts.maxChars !== undefined && text.length > opts.maxChars
    ? text.slice(0, text.lastIndexOf("\n", opts.maxChars) + 1 || opts.maxChars)
    : text;
  const folds = Math.max(1, Math.floor(1 / heldOut));
  const f = fold % folds;
  const size = Math.floor(t.length * heldOut);
  const lineStart = (i: number) => {
    if (i <= 0) return 0;
    if (i >= t.length) return t.length;
    const nl = t.indexOf("\n", i);
    return nl >= 0 && nl - i < 2000 ? nl + 1 : i;
  };
  const end = lineStart(t.length - f * size);
  const start = lineStart(t.length - (f + 1) * size);
  return { train: t.slice(0, start) + t.slice(end), heldOut: t.slice(start, end) };
}
