import {
  configProblem,
  type LlamaConfig,
  type LlamaWeights,
  weightsProblem,
} from "../model/weights.ts";

/** The error every format parser throws: the message starts with the file name. */
export class FormatError extends Error {
  constructor(readonly file: string, readonly problem: string, readonly tensor?: string) {
    super(`${file}: ${problem}`);
    this.name = "FormatError";
  }
}

/** 1056540 → "1,056,540" so byte counts in messages are readable. */
export function commas(n: number | bigint): string {
  return n.toLocaleString("en-US");
}

/**
 * Ends every loader: throws a FormatError naming the file and the tensor (in the file's own
 * naming, via `fileName(layer, field)`; layer is -1 outside the blocks) if anything is off.
 */
export function checkWeights(
  w: LlamaWeights,
  file: string,
  fileName: (layer: number, field: string) => string,
): LlamaWeights {
  const p = weightsProblem(w);
  if (!p) return w;
  if (!p.tensor) throw new FormatError(file, p.problem);
  const m = /^layers\.(\d+)\.(\w+)$/.exec(p.tensor);
  const tensor = m ? fileName(Number(m[1]), m[2]) : fileName(-1, p.tensor);
  throw new FormatError(file, `tensor ${tensor} ${p.problem}`, tensor);
}

/** Throws a FormatError when the config a file describes is impossible. */
export function checkConfig(c: LlamaConfig, file: string, what: string): void {
  const problem = configProblem(c);
  if (problem) throw new FormatError(file, `impossible ${what}: ${problem}`);
}
