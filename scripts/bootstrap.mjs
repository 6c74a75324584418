// Makes a fresh checkout runnable: installs node_modules (npm ci) when missing
// and rebuilds the wasm kernels when their sources are newer than the builds.
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
if (
  !existsSync(join(root, "node_modules/.bin/deno")) ||
  !existsSync(join(root, "node_modules/.bin/asc"))
) {
  console.error("installing dependencies (npm ci)…");
  execSync("npm ci --no-audit --no-fund", { cwd: root, stdio: "inherit" });
}
const { buildWasm } = await import("./build-wasm.mjs");
buildWasm(process.argv.includes("--force-build"));
