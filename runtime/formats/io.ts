/**
 * The Deno edge of the formats: file access. Everything else in this folder takes bytes or a
 * FileSource, so it runs unchanged in Node or a browser with a different edge.
 */
import type { FileSource } from "./hf.ts";

/** Joins path parts with "/" (accepted by Deno on every OS); later parts count as relative. */
export function joinPath(...parts: string[]): string {
  let out = "";
  for (const p of parts) {
    if (p === "") continue;
    out = out === "" ? p : `${out.replace(/\/+$/, "")}/${p.replace(/^\/+/, "")}`;
  }
  return out;
}

/** Removes "." and "name/.." segments lexically ("/a/b/../c/./d" → "/a/c/d"). */
export function normalizePath(path: string): string {
  const absolute = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (part !== ".." || !absolute) out.push(part);
  }
  return (absolute ? "/" : "") + out.join("/") || (absolute ? "/" : ".");
}

export function baseName(path: string): string {
  const trimmed = path.replace(/[\/\\]+$/, "");
  return trimmed.slice(Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\")) + 1);
}

export function dirName(path: string): string {
  const trimmed = path.replace(/[\/\\]+$/, "");
  const i = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
  return i < 0 ? "." : i === 0 ? "/" : trimmed.slice(0, i);
}

/** A FileSource over a directory on disk. */
export function denoDirectory(path: string): FileSource {
  return {
    name: path,
    read: (file) => Deno.readFile(joinPath(path, file)),
    exists: (file) => exists(joinPath(path, file)),
  };
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Names of the entries of a directory (files and folders), sorted. */
export async function listDirectory(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) names.push(e.name);
  return names.sort();
}

/**
 * Writes files into a directory (created if needed), each through a temporary name and a
 * rename so a reader never sees a half-written file.
 */
export async function writeFiles(dir: string, files: Record<string, Uint8Array>): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) {
    const target = joinPath(dir, name);
    const tmp = `${target}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await Deno.writeFile(tmp, bytes);
      await Deno.rename(tmp, target);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  }
}
