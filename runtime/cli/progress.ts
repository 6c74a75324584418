/**
 * A progress line on stderr for long commands: redrawn in place on a terminal, a line every
 * few seconds otherwise (so CI logs stay short). Never touches stdout.
 */
export class Progress {
  #start = performance.now();
  #lastPrint = 0;
  readonly #tty = Deno.stderr.isTerminal();
  #enc = new TextEncoder();

  constructor(readonly label: string, readonly total: number, readonly quiet = false) {}

  update(done: number, detail = ""): void {
    if (this.quiet) return;
    const now = performance.now();
    if (done < this.total && now - this.#lastPrint < (this.#tty ? 100 : 5000)) return;
    this.#lastPrint = now;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const width = 24, filled = Math.round(frac * width);
    const elapsed = (now - this.#start) / 1000;
    const eta = frac > 0 && frac < 1 ? ` eta ${(elapsed / frac - elapsed).toFixed(0)}s` : "";
    const line =
      `${this.label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${this.total}` +
      ` ${elapsed.toFixed(1)}s${eta} ${detail}`;
    Deno.stderr.writeSync(this.#enc.encode(this.#tty ? `\r\x1b[K${line}` : `${line}\n`));
  }

  done(): void {
    if (!this.quiet && this.#tty) Deno.stderr.writeSync(this.#enc.encode("\n"));
  }
}
