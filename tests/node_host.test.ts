/**
 * The kernels must run in any JS host: this loads the bundled loader
 * (kernels/build/dlora-kernels.js) in Node and checks a kernel result there.
 */
import { assertEquals } from "./util.ts";

const script = `
const k = await (await import(process.argv[1])).Kernels.load();
const x = k.from([1, 2, 3, 4, 5]);
const y = k.from([1, 1, 1, 1, 1]);
k.exports.axpy(y.ptr, x.ptr, 2, 5);
console.log(JSON.stringify({ variant: k.variant, y: Array.from(y.data) }));
`;

async function runNode(flags: string[]): Promise<{ variant: string; y: number[] }> {
  const bundle = new URL("../kernels/build/dlora-kernels.js", import.meta.url).pathname;
  const out = await new Deno.Command("node", {
    args: [...flags, "--input-type=module", "-e", script, bundle],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout).trim());
}

Deno.test("kernels load and run in Node, picking the SIMD variant the host supports", async () => {
  const version = new TextDecoder().decode(
    (await new Deno.Command("node", { args: ["--version"], stdout: "piped" }).output()).stdout,
  );
  const major = Number(version.trim().slice(1).split(".")[0]);
  const plain = await runNode([]);
  assertEquals(plain.y, [3, 5, 7, 9, 11]);
  // Node 20 keeps relaxed SIMD behind a flag, so it must fall back to plain SIMD.
  if (major < 22) assertEquals(plain.variant, "simd");
  const relaxed = await runNode(["--experimental-wasm-relaxed-simd"]);
  assertEquals(relaxed.variant, "relaxed");
  assertEquals(relaxed.y, [3, 5, 7, 9, 11]);
});
