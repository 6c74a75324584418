// Builds the four kernel variants (relaxed/plain SIMD × single/multi-thread)
// with AssemblyScript, then bundles the host-side loader to plain JavaScript
// (kernels/build/dlora-kernels.js + worker.js) for hosts that cannot run
// TypeScript (Node 20, browsers). Skips the wasm build when every output is
// newer than every source, unless --force is given.
import { execFileSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const targets = ["relaxed", "simd", "relaxed-mt", "simd-mt"];
const outputs = targets.map((t) => join(root, "kernels/build", `dlora-${t}.wasm`));

function newestSource() {
  const dir = join(root, "kernels/assembly");
  const files = readdirSync(dir).map((f) => join(dir, f));
  files.push(join(root, "asconfig.json"));
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

function oldestOutput() {
  try {
    return Math.min(...outputs.map((f) => statSync(f).mtimeMs));
  } catch {
    return -Infinity;
  }
}

function bundleLoader() {
  const esbuild = join(root, "node_modules/.bin/esbuild");
  for (
    const [entry, out] of [["kernels/mod.ts", "dlora-kernels.js"], [
      "kernels/worker.ts",
      "worker.js",
    ]]
  ) {
    execFileSync(esbuild, [
      entry,
      "--bundle",
      "--format=esm",
      "--platform=neutral",
      "--external:node:*",
      "--log-level=warning",
      `--outfile=kernels/build/${out}`,
    ], { cwd: root, stdio: "inherit" });
  }
}

export function buildWasm(force = false) {
  bundleLoader();
  if (!force && oldestOutput() > newestSource()) return false;
  const asc = join(root, "node_modules/.bin/asc");
  for (const target of targets) {
    execFileSync(asc, ["--config", "asconfig.json", "--target", target], {
      cwd: root,
      stdio: "inherit",
    });
  }
  console.error(`built ${targets.length} kernel variants in kernels/build/`);
  return true;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  buildWasm(process.argv.includes("--force"));
}
