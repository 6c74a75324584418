/**
 * Runs the kernel benchmark in --smoke mode (tiny odd shapes, few repeats) as
 * the task would, and checks what it reports: the JSON shape, and that every
 * implementation computed the same product as ours. No speed is asserted.
 */
import { assert, assertEquals } from "../tests/util.ts";

const SCRIPT = new URL("./kernels.ts", import.meta.url).pathname;

async function runBench(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function smokeReport(...args: string[]) {
  const { code, stdout, stderr } = await runBench("--smoke", "--json", ...args);
  assertEquals(code, 0, `benchmark failed:\n${stderr}`);
  const lines = stdout.trimEnd().split("\n");
  const report = JSON.parse(lines[lines.length - 1]);
  return { report, table: lines.slice(0, -1).join("\n") };
}

interface Row {
  op: string;
  case: string;
  shape: number[];
  impl: string;
  threads: number;
  gflops: number;
  max_abs_diff_ref: number;
  max_abs_diff_ours: number;
  gflops_with_readback?: number;
}

const CASES = [
  "square-512",
  "square-1024",
  "lora-down-576",
  "lora-up-576",
  "lora-down-2048",
  "lora-up-2048",
];
const CODEC_OPS = [
  "f16_encode",
  "f16_decode",
  "bf16_encode",
  "bf16_decode",
  "int8_quantize",
  "int8_dequantize",
  "topk_encode",
  "topk_decode",
];

Deno.test("smoke run: every implementation, every case, same product as ours", async () => {
  const { report, table } = await smokeReport();
  assertEquals(Object.keys(report).slice(0, 3), ["rows", "codec", "targets"]);
  assertEquals(report.smoke, true);
  assertEquals(report.skipped, [], "no peer may be skipped");
  const rows = report.rows as Row[];
  for (const id of CASES) {
    const rs = rows.filter((r) => r.case === id);
    const impls = rs.map((r) => `${r.impl}/${r.threads}`).sort();
    assertEquals(impls, ["ort-web/1", "ours/1", "ours/2", "tfjs-wasm/1"], `${id}:`);
    for (const r of rs) {
      assertEquals(r.op, "gemm");
      assertEquals(r.shape.length, 3);
      assert(r.shape.every((d) => Number.isInteger(d) && d > 0), `${id}: shape ${r.shape}`);
      assert(Number.isFinite(r.gflops) && r.gflops > 0, `${id} ${r.impl}: gflops ${r.gflops}`);
      // Inputs are uniform in [-1, 1): fp32 sums of K products stay well inside this.
      const K = r.shape[1];
      const tol = 1e-5 + 2e-6 * K;
      assert(
        r.max_abs_diff_ref <= tol,
        `${id} ${r.impl}/${r.threads}: |Y − f64 reference| = ${r.max_abs_diff_ref} > ${tol}`,
      );
      assert(
        r.max_abs_diff_ours <= tol,
        `${id} ${r.impl}/${r.threads}: |Y − ours| = ${r.max_abs_diff_ours} > ${tol}`,
      );
      if (r.impl === "tfjs-wasm") assert(r.gflops_with_readback! > 0, "tfjs readback timed");
    }
  }
  assertEquals(rows.length, CASES.length * 4);

  const codec = report.codec as {
    op: string;
    n: number;
    gb_per_s: number;
    roundtrip_max_abs_err?: number;
    top_k_exact?: boolean;
  }[];
  assertEquals(codec.map((c) => c.op), CODEC_OPS);
  for (const c of codec) {
    assert(Number.isInteger(c.n) && c.n > 0, `${c.op}: n ${c.n}`);
    assert(Number.isFinite(c.gb_per_s) && c.gb_per_s > 0, `${c.op}: GB/s ${c.gb_per_s}`);
  }
  // Inputs are in [-1, 1): bounds from each format's precision.
  const err = (op: string) => codec.find((c) => c.op === op)!.roundtrip_max_abs_err!;
  assert(err("f16_decode") <= 1e-3, `f16 roundtrip ${err("f16_decode")}`);
  assert(err("bf16_decode") <= 8e-3, `bf16 roundtrip ${err("bf16_decode")}`);
  assert(err("int8_dequantize") <= 1 / 127, `int8 roundtrip ${err("int8_dequantize")}`);
  assert(err("topk_decode") <= 1e-3, `top-k kept values ${err("topk_decode")}`);
  assert(codec.find((c) => c.op === "topk_decode")!.top_k_exact, "top-k keeps the k largest");

  const targets = report.targets as { id: string; measured: number | null; met: boolean }[];
  assertEquals(targets.length, 13);
  for (const t of targets) {
    assertEquals(typeof t.met, "boolean", `${t.id}.met`);
    assert(typeof t.measured === "number" && Number.isFinite(t.measured), `${t.id}.measured`);
  }
  assert(/tfjs-backend-wasm-simd\.wasm/.test(table), "table names the tfjs binary");
  assert(/ort-wasm-simd-threaded\.wasm/.test(table), "table names the ORT binary");
  assert(/timed/.test(table), "table says what is timed");
});

Deno.test("--only selects one half; bad flags exit 2 with the usage", async () => {
  const gemm = (await smokeReport("--only", "gemm")).report;
  assertEquals(gemm.codec, []);
  assertEquals(gemm.targets.length, 11);
  const codec = (await smokeReport("--only=codec")).report;
  assertEquals(codec.rows, []);
  assertEquals(codec.targets.map((t: { id: string }) => t.id), ["f16-encode", "topk-encode"]);
  const bad = await runBench("--only", "lora");
  assertEquals(bad.code, 2);
  assert(/--only takes gemm or codec/.test(bad.stderr), bad.stderr);
});
