/**
 * Quick GEMM/LoRA benchmark for kernel development (the official one with
 * peers is bench/kernels.ts): GFLOP/s per shape on 1 and 2 threads, median
 * and best of timed repeats after a warm-up. Wall-clock time; on a shared
 * machine run it a few times.
 *
 *   deno run -A bench/gemm-dev.ts [--only REGEX] [--threads 1,2] [--repeats N] [--plain]
 */
import { type F32, Kernels } from "../kernels/mod.ts";
import { gemmDyTX, gemmDyW, gemmFlops, gemmXWt } from "../kernels/gemm.ts";
import { loraBackward, loraBackwardFlops, loraForward, loraForwardFlops } from "../kernels/lora.ts";
import { randn } from "../tests/util.ts";

interface Case {
  id: string;
  flops: number;
  /** Allocates inputs, returns the timed call and a cleanup. */
  setup(k: Kernels): { run(): void; free(): void };
}

function arrays(k: Kernels, sizes: number[]): F32[] {
  return sizes.map((n, i) => k.from(randn(n, 1 + i)));
}

function gemmCase(
  layout: "xwt" | "dyw" | "dytx",
  M: number,
  K: number,
  N: number,
  label = "",
): Case {
  return {
    id: `${layout} ${M}×${K}×${N}${label}`,
    flops: gemmFlops(M, K, N),
    setup(k) {
      if (layout === "xwt") {
        const [Y, X, W] = arrays(k, [M * N, M * K, N * K]);
        return {
          run: () => gemmXWt(k, Y, X, W, M, K, N),
          free: () => [Y, X, W].forEach((a) => a.free()),
        };
      }
      if (layout === "dyw") {
        const [dX, dY, W] = arrays(k, [M * K, M * N, N * K]);
        return {
          run: () => gemmDyW(k, dX, dY, W, M, N, K),
          free: () => [dX, dY, W].forEach((a) => a.free()),
        };
      }
      const [dW, dY, X] = arrays(k, [N * K, M * N, M * K]);
      return {
        run: () => gemmDyTX(k, dW, dY, X, M, N, K),
        free: () => [dW, dY, X].forEach((a) => a.free()),
      };
    },
  };
}

function loraCase(pass: "fwd" | "bwd", M: number, IN: number, R: number, OUT: number): Case {
  return {
    id: `lora-${pass} M${M} ${IN}→${OUT} r${R}`,
    flops: pass === "fwd" ? loraForwardFlops(M, IN, R, OUT) : loraBackwardFlops(M, IN, R, OUT),
    setup(k) {
      const [X, A, B, XA, dY, G, dX, dA, dB] = arrays(k, [
        M * IN,
        R * IN,
        OUT * R,
        M * R,
        M * OUT,
        M * OUT,
        M * IN,
        R * IN,
        OUT * R,
      ]);
      const all = [X, A, B, XA, dY, G, dX, dA, dB];
      const run = pass === "fwd"
        ? () => loraForward(k, dY, XA, X, A, B, M, IN, R, OUT, 2)
        : () => loraBackward(k, { dX, dA, dB }, G, X, XA, A, B, M, IN, R, OUT, 2);
      return { run, free: () => all.forEach((a) => a.free()) };
    },
  };
}

const CASES: Case[] = [
  gemmCase("xwt", 512, 512, 512),
  gemmCase("xwt", 1024, 1024, 1024),
  gemmCase("xwt", 2048, 576, 16, " (X·Aᵀ r16)"),
  gemmCase("xwt", 2048, 16, 576, " (·Bᵀ r16)"),
  gemmCase("xwt", 2048, 2048, 16, " (X·Aᵀ r16)"),
  gemmCase("xwt", 2048, 16, 2048, " (·Bᵀ r16)"),
  gemmCase("xwt", 512, 768, 8),
  gemmCase("xwt", 512, 8, 768),
  gemmCase("dyw", 512, 512, 512),
  gemmCase("dytx", 512, 512, 512),
  gemmCase("dyw", 1024, 1024, 1024),
  gemmCase("dytx", 1024, 1024, 1024),
  gemmCase("xwt", 2048, 576, 1536, " (MLP up)"),
  gemmCase("dyw", 2048, 576, 1536, " (MLP up dX)"),
  gemmCase("dytx", 2048, 576, 1536, " (MLP up dW)"),
  loraCase("fwd", 2048, 576, 16, 576),
  loraCase("bwd", 2048, 576, 16, 576),
  loraCase("fwd", 2048, 2048, 16, 2048),
  loraCase("bwd", 2048, 2048, 16, 2048),
  loraCase("fwd", 2048, 576, 8, 1536),
  loraCase("bwd", 2048, 1536, 8, 576),
];

function parseArgs(args: string[]) {
  const opts = { only: null as RegExp | null, threads: [1, 2], repeats: 15, plain: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--only") opts.only = new RegExp(args[++i]);
    else if (a === "--threads") opts.threads = args[++i].split(",").map(Number);
    else if (a === "--repeats") opts.repeats = Number(args[++i]);
    else if (a === "--plain") opts.plain = true;
    else throw new Error(`unknown argument ${a}; see the header of bench/gemm-dev.ts`);
  }
  return opts;
}

/** Median and best seconds per call: calls batched to ≥ 20 ms per repeat. */
function time(run: () => void, repeats: number): { median: number; best: number } {
  for (let i = 0; i < 3; i++) run();
  let t0 = performance.now();
  run();
  const once = Math.max(performance.now() - t0, 1e-3);
  const batch = Math.max(1, Math.ceil(20 / once));
  const per: number[] = [];
  for (let r = 0; r < repeats; r++) {
    t0 = performance.now();
    for (let i = 0; i < batch; i++) run();
    per.push((performance.now() - t0) / 1e3 / batch);
  }
  per.sort((a, b) => a - b);
  return { median: per[per.length >> 1], best: per[0] };
}

if (import.meta.main) {
  const opts = parseArgs(Deno.args);
  const cases = CASES.filter((c) => !opts.only || opts.only.test(c.id));
  const results = new Map<string, string[]>();
  for (const threads of opts.threads) {
    const k = await Kernels.load({ threads, noRelaxed: opts.plain });
    try {
      console.error(`${k.variant}, ${k.threads} thread(s)`);
      for (const c of cases) {
        const { run, free } = c.setup(k);
        const { median, best } = time(run, opts.repeats);
        free();
        const cell = `${(c.flops / median / 1e9).toFixed(1)} (${
          (c.flops / best / 1e9).toFixed(1)
        })`;
        results.set(c.id, [...(results.get(c.id) ?? []), cell]);
        console.error(`  ${c.id}: ${cell}`);
      }
    } finally {
      k.close();
    }
  }
  const head = ["case", ...opts.threads.map((t) => `${t} thr GFLOP/s median (best)`)];
  const rows = cases.map((c) => [c.id, ...(results.get(c.id) ?? [])]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((s, i) => s.padEnd(widths[i])).join("  ");
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}
