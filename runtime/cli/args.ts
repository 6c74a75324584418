/** Flag parsing for `dlora <command>`: `--name value`, `--name=value`, `--flag`. */

export type FlagType = "string" | "number" | "boolean";
export type FlagSpec = Record<string, FlagType>;
export type Flags = Record<string, string | number | boolean | undefined>;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function parseFlags(argv: string[], spec: FlagSpec, command: string): Flags {
  const flags: Flags = {};
  const all: FlagSpec = { json: "boolean", help: "boolean", ...spec };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) {
      throw new UsageError(`${command}: unexpected argument "${arg}" (flags start with --)`);
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const type = all[name];
    if (type === undefined) {
      throw new UsageError(
        `${command}: unknown flag --${name}; known: ${
          Object.keys(all).map((f) => `--${f}`).join(" ")
        }`,
      );
    }
    let value: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (type === "boolean") {
      flags[name] = value === undefined ? true : !["false", "0", "off", "no"].includes(value);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`${command}: --${name} needs a value`);
    }
    if (type === "number") {
      const n = Number(value);
      if (value.trim() === "" || !Number.isFinite(n)) {
        throw new UsageError(`${command}: --${name} must be a number, got "${value}"`);
      }
      flags[name] = n;
    } else flags[name] = value;
  }
  return flags;
}

export function requireString(flags: Flags, name: string, command: string): string {
  const v = flags[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`${command}: --${name} is required`);
  return v;
}

export function optionalInt(
  flags: Flags,
  name: string,
  fallback: number,
  command: string,
  min = 1,
): number {
  const v = flags[name];
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new UsageError(`${command}: --${name} must be an integer ≥ ${min}, got ${v}`);
  }
  return v;
}

export function optionalNumber(flags: Flags, name: string, fallback: number): number {
  const v = flags[name];
  return typeof v === "number" ? v : fallback;
}

/** A flag value whose feature has not landed yet (exit code 3, "not built yet"). */
export class NotBuiltError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotBuiltError";
  }
}
