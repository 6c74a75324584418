/**
 * The JSON control messages of module selection (DLORA.md §3, §5; issue 5), validated with zod:
 *
 * - `SELECT` (coordinator → device): the modules the device trains from now on, what changed at
 *   this decision, the budget and tier it was decided under, and the step (optimizer steps
 *   completed) at which the device must report its scores next.
 * - `SCORES` (device → coordinator): one number per module trained since the device's last
 *   report — never parameters.
 *
 * The body of both frames is UTF-8 JSON (header fields as for every control frame, modules mask
 * 0, no tensors). Anything that does not parse or validate is a `bad-body` ProtocolError.
 */
import { z } from "zod";
import { ProtocolError } from "./errors.ts";

/** Module keys as the LoRA names them: "layer.proj". */
const moduleKey = z.string().regex(/^\d{1,4}\.(q|k|v|o|gate|up|down)$/, {
  error: 'is not a module key ("layer.proj", e.g. "3.q")',
});
const keys = z.array(moduleKey).max(4096);
const step = z.number().int().min(0).max(2 ** 32 - 1);
const scoreName = z.enum(["change", "effective", "sensitivity"]);

export const selectMessageSchema = z.strictObject({
  /** Optimizer steps completed when the decision was taken (0 = before training). */
  step,
  /** Modules trained from now on, probes excluded. */
  active: keys,
  /** Modules revived for a probe window from now on. */
  probing: keys,
  /** Modules this decision deactivated. */
  killed: keys,
  /** Modules this decision reactivated (probes and direct revivals). */
  revived: keys,
  /** Every move with its kind and the score it was decided on. */
  events: z.array(z.strictObject({
    kind: z.enum(["kill", "probe", "revive", "promote", "drop"]),
    module: moduleKey,
    score: z.number().optional(),
  })).max(4096),
  budget: z.union([
    z.strictObject({ rho: z.number().gt(0).lte(1), over: z.enum(["count", "cost"]).optional() }),
    z.strictObject({ tau: z.number().min(0) }),
  ]).nullable(),
  /** The device's tier when the decision was taken (null when untiered). */
  tier: z.string().max(64).nullable(),
  /** Steps completed at which the device reports SCORES next; null = never again. */
  reportAt: step.nullable(),
  /** The score the device reports. */
  score: scoreName,
  /** Multiplier of the device's learning rate from now on (1 = the job's lr). */
  lr_scale: z.number().gt(0).max(100),
  /**
   * Rank reallocation (kr.rank_scale): the active modules grow to this rank now (each capped at
   * min(in, out); never shrunk), keeping s·B·A. Absent: no growth.
   */
  rank: z.number().int().min(1).max(4096).optional(),
}).superRefine((m, ctx) => {
  const seen = new Set<string>();
  for (const k of [...m.active, ...m.probing]) {
    if (seen.has(k)) ctx.addIssue({ code: "custom", message: `module ${k} is listed twice` });
    seen.add(k);
  }
  if (m.reportAt !== null && m.reportAt <= m.step) {
    ctx.addIssue({
      code: "custom",
      message: `reportAt ${m.reportAt} is not after the decision's step ${m.step}`,
    });
  }
});

export const scoresMessageSchema = z.strictObject({
  /** Steps completed when the scores were taken (the SELECT's reportAt). */
  step,
  score: scoreName,
  /** c_i per module trained since the last report. */
  values: z.record(moduleKey, z.number().refine(Number.isFinite, { error: "must be finite" })),
});

export type SelectMessage = z.output<typeof selectMessageSchema>;
export type ScoresMessage = z.output<typeof scoresMessageSchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The JSON body of a SELECT or SCORES frame; invalid input is a bad-argument error. */
export function encodeControlJson(type: "SELECT" | "SCORES", message: unknown): Uint8Array {
  const schema = type === "SELECT" ? selectMessageSchema : scoresMessageSchema;
  const r = schema.safeParse(message);
  if (!r.success) {
    throw new ProtocolError("bad-argument", `${type}: ${issues(r.error)}`);
  }
  return encoder.encode(JSON.stringify(r.data));
}

/** Parses and validates a SELECT or SCORES body; anything wrong is a bad-body error. */
export function decodeControlJson(type: "SELECT", body: Uint8Array): SelectMessage;
export function decodeControlJson(type: "SCORES", body: Uint8Array): ScoresMessage;
export function decodeControlJson(
  type: "SELECT" | "SCORES",
  body: Uint8Array,
): SelectMessage | ScoresMessage {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(body));
  } catch (e) {
    throw new ProtocolError(
      "bad-body",
      `${type} body is not UTF-8 JSON: ${(e as Error).message}`,
    );
  }
  const schema = type === "SELECT" ? selectMessageSchema : scoresMessageSchema;
  const r = schema.safeParse(json);
  if (!r.success) throw new ProtocolError("bad-body", `${type} body: ${issues(r.error)}`);
  return r.data;
}

function issues(e: z.ZodError): string {
  return e.issues.slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join(".") + " " : ""}${i.message}`)
    .join("; ");
}
