/**
 * Model arguments (DLORA.md §8) → a model on disk (or a synthetic one) and its tokenizer.
 *
 * Accepted: a path (llama2.c `.bin`, Hugging Face directory with config.json, `.gguf`, or a
 * folder holding one of those), `synthetic:<preset>`, or a known name such as `stories260K`,
 * looked up in `$DLORA_HOME/models/<name>/`, `./.dlora/models/<name>/`,
 * `../shared/models/<name>/` (from the working directory and from the repository root), and
 * finally downloaded from `$DLORA_MODEL_URL/<name>/<file>` (default: the model's public home)
 * into `$DLORA_HOME`, checked against the registry's sha256 and size.
 */
import type { LlamaWeights } from "./model/weights.ts";
import { loadGgufLlama } from "./formats/gguf_llama.ts";
import { loadHfDirectory } from "./formats/hf.ts";
import {
  baseName,
  denoDirectory,
  dirName,
  exists,
  isDirectory,
  joinPath,
  listDirectory,
  normalizePath,
} from "./formats/io.ts";
import { parseLlama2c } from "./formats/llama2c.ts";
import { syntheticWeights } from "./formats/synthetic.ts";

export type ModelFormat = "llama2c" | "hf" | "gguf" | "synthetic";

/** Which tokenizer goes with a model; the tokenizer module reads it. */
export interface TokenizerRef {
  /** llama2c: tokenizer .bin; hf-json: tokenizer.json; gguf: the vocabulary inside the .gguf. */
  kind: "llama2c" | "hf-json" | "gguf";
  path: string;
}

export interface ResolvedModel {
  format: ModelFormat;
  /** The .bin / .gguf file, the HF directory, or "synthetic:<preset>". */
  path: string;
  /** How it was found. */
  origin: "path" | "search" | "download" | "synthetic";
  tokenizer: TokenizerRef | null;
  /** Why `tokenizer` is null, in words the CLI can show. */
  tokenizerProblem?: string;
}

export interface RegistryFile {
  name: string;
  sha256: string;
  size: number;
  /** Not hosted everywhere (e.g. our oracle.json): a 404 skips it. */
  optional?: boolean;
}

export interface RegistryEntry {
  /** The file that holds the weights. */
  model: string;
  files: RegistryFile[];
  /** Default place to fetch `<file>` from when $DLORA_MODEL_URL is not set. */
  url: string;
}

/** Known models: what a checksum-verified download fetches. */
export const MODEL_REGISTRY: Record<string, RegistryEntry> = {
  stories260K: {
    model: "stories260K.bin",
    url: "https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/",
    files: [
      {
        name: "stories260K.bin",
        size: 1056540,
        sha256: "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
      },
      {
        name: "tok512.bin",
        size: 6227,
        sha256: "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
      },
      {
        name: "oracle.json",
        size: 4571,
        sha256: "de01b52f3e73af957f370ed48c21732b85456e60a8642e865dc00b3aa1efa225",
        optional: true,
      },
    ],
  },
};

export interface ResolveOptions {
  /** Base of relative paths and of ./.dlora and ../shared (default Deno.cwd()). */
  cwd?: string;
  /** Environment lookup (default Deno.env.get): DLORA_HOME, DLORA_MODEL_URL, HOME, ... */
  env?: (name: string) => string | undefined;
  /** Folders whose `models/<name>/` is searched, in order (default: see searchRoots). */
  searchRoots?: string[];
  /** Allow the download step (default true). */
  download?: boolean;
  registry?: Record<string, RegistryEntry>;
  fetch?: typeof fetch;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

const defaultEnv = (name: string) => Deno.env.get(name);

/** Where downloads go: $DLORA_HOME, else $XDG_CACHE_HOME/dlora, ~/.cache/dlora, ./.dlora. */
export function dloraHome(opts: ResolveOptions = {}): string {
  const env = opts.env ?? defaultEnv, cwd = opts.cwd ?? Deno.cwd();
  const explicit = env("DLORA_HOME");
  if (explicit) return absolute(explicit, cwd);
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return joinPath(xdg, "dlora");
  const home = env("HOME") ?? env("USERPROFILE");
  return home ? joinPath(home, ".cache", "dlora") : joinPath(cwd, ".dlora");
}

/** The repository root, when this file is loaded from disk. */
function repoRoot(): string | null {
  const url = new URL("..", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname).replace(/\/$/, "") : null;
}

/** Folders searched for `models/<name>/`, without duplicates. */
export function searchRoots(opts: ResolveOptions = {}): string[] {
  if (opts.searchRoots) return opts.searchRoots;
  const cwd = opts.cwd ?? Deno.cwd();
  const roots = [dloraHome(opts), absolute(".dlora", cwd), absolute("../shared", cwd)];
  const repo = repoRoot();
  if (repo) roots.push(absolute(".dlora", repo), absolute("../shared", repo));
  return [...new Set(roots)];
}

function absolute(path: string, cwd: string): string {
  if (/^[A-Za-z]:[\\/]/.test(path)) return path; // Windows drive path: leave as given
  return normalizePath(path.startsWith("/") ? path : joinPath(cwd, path));
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** Resolves a model argument; errors say what was tried. */
export async function resolveModel(arg: string, opts: ResolveOptions = {}): Promise<ResolvedModel> {
  if (arg.startsWith("synthetic:")) {
    return {
      format: "synthetic",
      path: arg,
      origin: "synthetic",
      tokenizer: null,
      tokenizerProblem: "synthetic models have no tokenizer",
    };
  }
  const cwd = opts.cwd ?? Deno.cwd();
  const asPath = absolute(arg, cwd);
  if (await exists(asPath)) return { ...(await resolvePath(asPath)), origin: "path" };
  if (!NAME.test(arg)) {
    throw new Error(
      `model ${arg}: no such file or directory (${asPath}), and not a model name either`,
    );
  }
  const registry = opts.registry ?? MODEL_REGISTRY;
  const known = Object.keys(registry).find((k) => k.toLowerCase() === arg.toLowerCase());
  const name = known ?? arg;
  const tried: string[] = [];
  for (const root of searchRoots(opts)) {
    const dir = joinPath(root, "models", name);
    tried.push(dir);
    if (await isDirectory(dir)) {
      const entry = known ? registry[known] : undefined;
      if (entry && !(await exists(joinPath(dir, entry.model)))) continue;
      return { ...(await resolvePath(dir, entry?.model)), origin: "search" };
    }
  }
  if (!known) {
    throw new Error(
      `model ${arg}: not a file, not in ${tried.join(", ")}, and not a known name (known: ${
        Object.keys(registry).join(", ")
      }, synthetic:<preset>)`,
    );
  }
  if (opts.download === false) {
    throw new Error(`model ${arg}: not found in ${tried.join(", ")} and downloads are off`);
  }
  const dir = await downloadModel(known, registry[known], opts);
  return { ...(await resolvePath(dir, registry[known].model)), origin: "download" };
}

/** What an existing path holds: format, model path and tokenizer. */
async function resolvePath(
  path: string,
  modelFile?: string,
): Promise<Omit<ResolvedModel, "origin">> {
  if (!(await isDirectory(path))) return await resolveFile(path);
  if (await exists(joinPath(path, "config.json"))) return await resolveHf(path);
  if (modelFile) return await resolveFile(joinPath(path, modelFile));
  const entries = await listDirectory(path);
  const ggufs = entries.filter((e) => e.endsWith(".gguf"));
  const bins = entries.filter((e) => e.endsWith(".bin") && !isTokenizerBin(e));
  const candidates = [...ggufs, ...bins];
  if (candidates.length === 1) return await resolveFile(joinPath(path, candidates[0]));
  throw new Error(
    candidates.length === 0
      ? `${path}: no model here (no config.json, .gguf or llama2.c .bin; found: ${
        entries.join(", ") || "nothing"
      })`
      : `${path}: several models here (${candidates.join(", ")}); name the file`,
  );
}

function isTokenizerBin(name: string): boolean {
  return name === "tokenizer.bin" || /^tok.*\.bin$/.test(name);
}

async function resolveFile(path: string): Promise<Omit<ResolvedModel, "origin">> {
  if (path.endsWith(".gguf") || (await startsWithGgufMagic(path))) {
    return { format: "gguf", path, tokenizer: { kind: "gguf", path } };
  }
  const dir = dirName(path);
  const found = await llama2cTokenizerIn(dir, baseName(path));
  return { format: "llama2c", path, ...found };
}

async function startsWithGgufMagic(path: string): Promise<boolean> {
  const f = await Deno.open(path, { read: true });
  try {
    const head = new Uint8Array(4);
    const n = await f.read(head);
    return n === 4 && new TextDecoder().decode(head) === "GGUF";
  } finally {
    f.close();
  }
}

/** `tokenizer.bin`, else the only `tok*.bin` in `dir` (never the model file itself). */
async function llama2cTokenizerIn(
  dir: string,
  modelFile?: string,
): Promise<Pick<ResolvedModel, "tokenizer" | "tokenizerProblem">> {
  const entries = (await listDirectory(dir)).filter((e) => e !== modelFile);
  if (entries.includes("tokenizer.bin")) {
    return { tokenizer: { kind: "llama2c", path: joinPath(dir, "tokenizer.bin") } };
  }
  const toks = entries.filter((e) => /^tok.*\.bin$/.test(e));
  if (toks.length === 1) return { tokenizer: { kind: "llama2c", path: joinPath(dir, toks[0]) } };
  return {
    tokenizer: null,
    tokenizerProblem: toks.length === 0
      ? `no tokenizer.bin or tok*.bin beside the model in ${dir}; pass --tokenizer`
      : `several tokenizers in ${dir} (${toks.join(", ")}); pass --tokenizer`,
  };
}

async function resolveHf(dir: string): Promise<Omit<ResolvedModel, "origin">> {
  if (await exists(joinPath(dir, "tokenizer.json"))) {
    return {
      format: "hf",
      path: dir,
      tokenizer: { kind: "hf-json", path: joinPath(dir, "tokenizer.json") },
    };
  }
  const found = await llama2cTokenizerIn(dir);
  if (!found.tokenizer && (await exists(joinPath(dir, "tokenizer.model")))) {
    found.tokenizerProblem = `${dir} has only tokenizer.model (SentencePiece protobuf), which ` +
      "is not read; pass --tokenizer with a tokenizer.json or llama2.c tokenizer";
  } else if (!found.tokenizer) {
    found.tokenizerProblem = `no tokenizer.json or llama2.c tokenizer in ${dir}; pass --tokenizer`;
  }
  return { format: "hf", path: dir, ...found };
}

/**
 * Downloads a registry model into `$DLORA_HOME/models/<name>/`: each file through a temporary
 * name, checked for size and sha256, then renamed into place; a bad file is discarded.
 * Files already present are kept. Returns the model directory.
 */
export async function downloadModel(
  name: string,
  entry: RegistryEntry,
  opts: ResolveOptions = {},
): Promise<string> {
  const env = opts.env ?? defaultEnv, doFetch = opts.fetch ?? fetch;
  const base = env("DLORA_MODEL_URL");
  const dir = joinPath(dloraHome(opts), "models", name);
  await Deno.mkdir(dir, { recursive: true });
  for (const file of entry.files) {
    const target = joinPath(dir, file.name);
    if (await exists(target)) continue;
    const url = base
      ? new URL(`${name}/${file.name}`, withSlash(base))
      : new URL(file.name, entry.url);
    opts.log?.(`downloading ${url} (${file.size} bytes)`);
    let response: Response;
    try {
      response = await doFetch(url);
    } catch (e) {
      if (file.optional) continue;
      throw new Error(
        `${file.name}: download from ${url} failed: ${(e as Error).message} ` +
          `(offline? put the files in ${dir}, or set DLORA_MODEL_URL to a mirror)`,
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      if (file.optional && response.status === 404) continue;
      throw new Error(`${file.name}: download from ${url} failed: HTTP ${response.status}`);
    }
    await fetchToFile(response, target, file);
  }
  return dir;
}

function withSlash(url: string): string {
  return url.endsWith("/") ? url : `${url}/`;
}

/** Streams a response into `<target>.part-*`, verifies it, renames it to `target`. */
async function fetchToFile(response: Response, target: string, file: RegistryFile): Promise<void> {
  const tmp = `${target}.part-${crypto.randomUUID().slice(0, 8)}`;
  const out = await Deno.open(tmp, { write: true, createNew: true });
  let ok = false;
  try {
    let received = 0;
    const reader = response.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.length;
      if (received > file.size) {
        await reader.cancel();
        throw new Error(
          `${file.name}: the server sent more than the expected ${file.size} bytes; ` +
            "the download was discarded",
        );
      }
      for (let off = 0; off < value.length;) off += await out.write(value.subarray(off));
    }
    out.close();
    if (received !== file.size) {
      throw new Error(
        `${file.name}: size mismatch: expected ${file.size} bytes, got ${received}; ` +
          "the download was discarded",
      );
    }
    const digest = await sha256Hex(await Deno.readFile(tmp));
    if (digest !== file.sha256) {
      throw new Error(
        `${file.name}: sha256 mismatch: expected ${file.sha256}, got ${digest}; ` +
          "the download was discarded",
      );
    }
    await Deno.rename(tmp, target);
    ok = true;
  } finally {
    try {
      out.close();
    } catch { /* already closed */ }
    if (!ok) await Deno.remove(tmp).catch(() => {});
  }
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Loads the weights of a resolved model (or resolves the argument first). */
export async function loadWeights(
  model: ResolvedModel | string,
  opts: ResolveOptions & { seed?: number } = {},
): Promise<LlamaWeights> {
  const m = typeof model === "string" ? await resolveModel(model, opts) : model;
  switch (m.format) {
    case "synthetic":
      return syntheticWeights(m.path.slice("synthetic:".length), opts.seed ?? 0);
    case "hf":
      return await loadHfDirectory(denoDirectory(m.path));
    case "gguf":
      return loadGgufLlama(await Deno.readFile(m.path), m.path);
    case "llama2c":
      return parseLlama2c(await Deno.readFile(m.path), m.path);
  }
}
