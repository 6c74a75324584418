/**
 * Where a step's time goes: wall-clock per kernel family, summed over calls. The engine takes an
 * optional profile and laps it after each kernel call; without one it does nothing.
 */
export interface ProfileEntry {
  name: string;
  ms: number;
  calls: number;
}

export class StepProfile {
  #totals = new Map<string, { ms: number; calls: number }>();

  now(): number {
    return performance.now();
  }

  /** Adds the time since `since` to `name`; returns the current time for the next lap. */
  lap(name: string, since: number): number {
    const t = performance.now();
    const e = this.#totals.get(name);
    if (e === undefined) this.#totals.set(name, { ms: t - since, calls: 1 });
    else {
      e.ms += t - since;
      e.calls++;
    }
    return t;
  }

  reset(): void {
    this.#totals.clear();
  }

  /** Entries, largest first. */
  entries(): ProfileEntry[] {
    return [...this.#totals].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.ms - a.ms);
  }

  /** A table of ms per step (over `steps` steps) and share of the total. */
  format(steps = 1): string {
    const rows = this.entries();
    const total = rows.reduce((s, r) => s + r.ms, 0);
    return rows.map((r) =>
      `${r.name.padEnd(22)} ${(r.ms / steps).toFixed(2).padStart(9)} ms ${
        (100 * r.ms / total).toFixed(1).padStart(5)
      }%  ${String(r.calls / steps).padStart(5)} calls`
    ).join("\n");
  }
}
