/**
 * A device's private data as text (DLORA.md §7): plain text, `.jsonl` with a `text` field,
 * or `.tsv` with `sentence<TAB>label`. Pure: takes the file's name and contents.
 */

export interface Example {
  text: string;
  label?: string;
}

export type DataKind = "text" | "jsonl" | "tsv";

export function dataKind(fileName: string): DataKind {
  const lower = fileName.toLowerCase();
  if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) return "jsonl";
  if (lower.endsWith(".tsv")) return "tsv";
  return "text";
}

/** Splits a data file into examples; errors name the file and line. */
export function parseData(fileName: string, contents: string): Example[] {
  const kind = dataKind(fileName);
  if (kind === "text") return contents.length > 0 ? [{ text: contents }] : [];
  const out: Example[] = [];
  const lines = contents.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    if (kind === "jsonl") {
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (e) {
        throw new Error(`${fileName}:${i + 1}: not valid JSON (${(e as Error).message})`);
      }
      const text = (row as { text?: unknown })?.text;
      if (typeof text !== "string") {
        throw new Error(`${fileName}:${i + 1}: each line needs a string "text" field`);
      }
      const label = (row as { label?: unknown }).label;
      out.push(label === undefined ? { text } : { text, label: String(label) });
      return;
    }
    const tab = line.lastIndexOf("\t");
    if (tab < 0) throw new Error(`${fileName}:${i + 1}: expected "sentence<TAB>label"`);
    const text = line.slice(0, tab), label = line.slice(tab + 1).trim();
    // A header row such as "sentence\tlabel" is not data.
    if (i === 0 && text === "sentence" && label === "label") return;
    out.push({ text, label });
  });
  return out;
}

/** The examples as one training text (one example per line for jsonl/tsv). */
export function examplesToText(examples: Example[]): string {
  return examples.length === 1 ? examples[0].text : examples.map((e) => e.text).join("\n");
}

/**
 * Splits text into train and held-out parts: the held-out part is the last `heldOut`
 * fraction, cut at a line boundary when one is near, so the two never share a line.
 */
export function splitText(text: string, heldOut: number): { train: string; eval: string } {
  if (!(heldOut >= 0 && heldOut < 1)) throw new RangeError(`held-out fraction must be in [0, 1)`);
  if (heldOut === 0) return { train: text, eval: "" };
  let cut = Math.floor(text.length * (1 - heldOut));
  const nl = text.indexOf("\n", cut);
  if (nl >= 0 && nl - cut < 2000) cut = nl + 1;
  return { train: text.slice(0, cut), eval: text.slice(cut) };
}
