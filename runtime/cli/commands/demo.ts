/**
 * `dlora demo [--devices 3 --steps N --codec f32|f16|bf16|int8 --seed S --kr on|off|rank --out DIR]`:
 * the main job of DLORA.md §8 — a coordinator and N devices in different tiers on loopback, each
 * fine-tuning stories260K on its own private text. A live line per device on stderr, then a table
 * (tier, held-out NLL before/after, bytes, FLOPs, where the adapter and report went) on stdout.
 */
import {
  DEMO_CODECS,
  DEMO_DEFAULTS,
  type DemoCodec,
  demoResultJson,
  runDemo,
} from "../../demo/demo.ts";
import type { DemoDeviceSetup } from "../../demo/demo.ts";
import { type Flags, optionalInt, UsageError } from "../args.ts";

export const demoFlags = {
  devices: "number",
  steps: "number",
  codec: "string",
  seed: "number",
  kr: "string",
  out: "string",
  batch: "number",
  "seq-len": "number",
  "eval-tokens": "number",
} as const;

const mb = (bytes: number) =>
  bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(1)} MB`;

/** One status line per device on stderr: redrawn in place on a terminal, every 5 s otherwise. */
class DeviceLines {
  readonly #tty = Deno.stderr.isTerminal();
  readonly #enc = new TextEncoder();
  #lines: string[] = [];
  #drawn = 0;
  #last = 0;
  readonly #finished = new Set<number>();

  set(i: number, line: string, last = false): void {
    this.#lines[i] = line;
    if (!this.#tty && last) {
      // A finished device: its last line, once (the beat below prints only running ones).
      this.#finished.add(i);
      Deno.stderr.writeSync(this.#enc.encode(`${line}\n`));
      return;
    }
    const now = performance.now();
    if (!last && now - this.#last < (this.#tty ? 150 : 5000)) return;
    this.#last = now;
    this.draw();
  }

  draw(): void {
    const lines = Array.from(this.#lines, (l) => l ?? "");
    let text: string;
    if (this.#tty) {
      text = (this.#drawn > 0 ? `\x1b[${this.#drawn}A` : "") +
        lines.map((l) => `\r\x1b[K${l}\n`).join("");
      this.#drawn = lines.length;
    } else text = lines.filter((_, i) => !this.#finished.has(i)).map((l) => `${l}\n`).join("");
    Deno.stderr.writeSync(this.#enc.encode(text));
  }
}

export async function demoCommand(flags: Flags): Promise<Record<string, unknown>> {
  const cmd = "demo";
  const kr = flags.kr ?? "on";
  if (kr !== "on" && kr !== "off" && kr !== "rank") {
    throw new UsageError(
      `${cmd}: --kr must be on, off or rank (on with rank reallocation), got "${kr}"`,
    );
  }
  const devices = optionalInt(flags, "devices", DEMO_DEFAULTS.devices, cmd);
  if (devices > 8) throw new UsageError(`${cmd}: --devices must be in 1..8, got ${devices}`);
  const codec = (flags.codec ?? "f32") as DemoCodec;
  if (!DEMO_CODECS.includes(codec)) {
    throw new UsageError(
      `${cmd}: --codec must be one of ${DEMO_CODECS.join(", ")}, got "${codec}"`,
    );
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").replace(/-\d+Z$/, "Z");
  const out = typeof flags.out === "string" && flags.out !== "" ? flags.out : `out/demo-${stamp}`;
  const lines = new DeviceLines();
  let setups: readonly DemoDeviceSetup[] = [];
  const log = (line: string) => console.error(`dlora demo: ${line}`);
  const t0 = new Map<number, number>();
  const batch = optionalInt(flags, "batch", DEMO_DEFAULTS.batch, cmd);
  const seqLen = optionalInt(flags, "seq-len", DEMO_DEFAULTS.seqLen, cmd, 2);
  const r = await runDemo({
    devices,
    steps: optionalInt(flags, "steps", DEMO_DEFAULTS.steps, cmd),
    codec,
    kr: kr !== "off",
    rankRealloc: kr === "rank",
    seed: optionalInt(flags, "seed", 0, cmd, 0),
    out,
    batch,
    seqLen,
    evalTokens: optionalInt(flags, "eval-tokens", DEMO_DEFAULTS.evalTokens, cmd, 2),
    log,
    onDevices: (s) => {
      setups = s;
      for (const d of s) {
        log(
          `${d.name}: tier ${d.tier} (ρ ${d.rho}, micro-batch ${d.microBatch}; ` +
            `${d.gflops} GFLOP/s; ${
              d.tierSource === "operator" ? "operator override" : d.tierReason
            })`,
        );
      }
    },
    onStep: (i, s) => {
      const start = t0.get(i) ?? performance.now() - s.seconds * 1000;
      t0.set(i, start);
      const elapsed = (performance.now() - start) / 1000;
      const d = setups[i];
      const tokens = s.step * batch * seqLen;
      lines.set(
        i,
        `${d.name.padEnd(24)} ${d.tier} step ${String(s.step).padStart(3)}/${s.steps} ` +
          `loss ${s.loss.toFixed(3)} ${(tokens / Math.max(elapsed, 1e-9)).toFixed(0)} tok/s ` +
          `modules ${String(s.modules).padStart(2)} up ${mb(s.bytesUp)} down ${mb(s.bytesDown)}`,
        s.step === s.steps,
      );
    },
  });
  return demoResultJson(r);
}

/** The table printed without --json. */
export function printDemoTable(json: Record<string, unknown>): void {
  const r = json as unknown as ReturnType<typeof demoResultJson> & {
    devices: Record<string, unknown>[];
  };
  const rows = [
    [
      "device",
      "tier",
      "ρ",
      "mb",
      "NLL before",
      "NLL after",
      "up",
      "down",
      "device FLOPs",
      "active at end",
      "FLOPs saved*",
      "bytes saved*",
      "adapter",
    ],
    ...r.devices.map((d) => [
      String(d.name),
      String(d.tier),
      String(d.rho),
      String(d.micro_batch),
      (d.nll_before as number).toFixed(3),
      (d.nll_after as number).toFixed(3),
      mb(d.bytes_up as number),
      mb(d.bytes_down as number),
      `${((d.flops as number) / 1e9).toFixed(2)} G`,
      `${kr(d).active_end}/${kr(d).modules}`,
      pct(saved(d).flops),
      pct(saved(d).bytes),
      String(d.adapter),
    ]),
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const fmt = (row: string[]) =>
    row.map((cell, c) => (c >= 2 && c <= 11 ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join("  ").trimEnd();
  console.log(fmt(rows[0]));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows.slice(1)) console.log(fmt(row));
  console.log(
    `\n${r.devices.length} devices, ${r.steps} steps of ${r.batch}×${r.seq_len} tokens, codec ` +
      `${r.codec}, rank ${r.rank}, Kill and Revive ${
        r.kr ? (r.rank_realloc ? "on with rank reallocation" : "on") : "off"
      }; wall ${r.wall_s} s ` +
      `(training ${r.train_s} s)`,
  );
  console.log(
    `* against the same run with every module active, estimated from each device's own ` +
      `accounting (median cost of the steps that trained every module × steps)` +
      (r.kr ? "; Kill and Revive on, each device at its tier's budget ρ" : "; --kr off"),
  );
  console.log(`reports: ${r.out}/demo.json and <adapter>/report.json`);
}

type KrJson = { active_end: number; modules: number };
type SavedJson = { flops: number | null; bytes: number | null };
const kr = (d: Record<string, unknown>) => d.kr as KrJson;
const saved = (d: Record<string, unknown>) => d.savings_estimated as SavedJson;
/** A share as "12.3 %" ("0.0 %", not "-0.0 %", for what rounds to zero). */
const pct = (x: number | null) =>
  x === null ? "—" : `${(Math.abs(x) < 5e-4 ? 0 : 100 * x).toFixed(1)} %`;
