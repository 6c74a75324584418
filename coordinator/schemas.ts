/**
 * zod schemas of the control-plane JSON (versioned under /v1) and the readable form of their
 * errors. The job schema takes this coordinator's limits, so a job it cannot run is refused
 * with the limit in the message.
 */
import { z } from "zod";
import { PROJS } from "../runtime/model/modules.ts";
import { TIERS } from "./tiers.ts";
import { defaultLrScale, KR_DEFAULTS } from "./scheduler/options.ts";

/** Limits on what one request may ask for (config.limits). */
export interface JobLimits {
  maxRank: number;
  maxSteps: number;
  maxBatch: number;
  maxSeqLen: number;
  /** batch × seq_len: bounds the activations the coordinator holds for one step. */
  maxTokensPerStep: number;
  maxDevicesPerJob: number;
}

export const DEFAULT_JOB_LIMITS: JobLimits = {
  maxRank: 256,
  maxSteps: 1_000_000,
  maxBatch: 256,
  maxSeqLen: 4096,
  maxTokensPerStep: 65_536,
  maxDevicesPerJob: 1024,
};

const PRINTABLE = /^\P{Cc}*$/u;
const DEVICE_ID = /^dev_[A-Za-z0-9_-]{16}$/;

const displayName = (max: number) =>
  z.string().trim().min(1).max(max).regex(PRINTABLE, {
    error: "must not contain control characters",
  });

export const registerDeviceSchema = z.strictObject({
  name: displayName(64).optional(),
  capability: z.strictObject({
    /** The device's own LoRA-kernel benchmark over all its threads. */
    gflops: z.number().positive().max(1e6),
    threads: z.number().int().min(1).max(1024),
    memory_mb: z.number().int().min(16).max(16_777_216),
  }),
});
export type RegisterDevice = z.output<typeof registerDeviceSchema>;

export const patchDeviceSchema = z.strictObject({
  /** Operator override of the tier policy; null returns the device to the policy. */
  tier: z.enum(TIERS).nullable().optional(),
  /** A disabled device's token is refused (403) until it is enabled again. */
  status: z.enum(["active", "disabled"]).optional(),
  name: displayName(64).optional(),
}).refine((p) => Object.keys(p).length > 0, {
  error: "give at least one of tier, status, name",
});
export type PatchDevice = z.output<typeof patchDeviceSchema>;

export const createEnrollmentSchema = z.strictObject({
  /** How many devices may register with this token. */
  uses: z.number().int().min(1).max(10_000).default(1),
  ttl_s: z.number().int().min(60).max(30 * 86_400).default(86_400),
});

export const DTYPES = ["f32", "f16", "bf16", "int8"] as const;
export type WireDtype = (typeof DTYPES)[number];

const codecSchema = z.strictObject({
  /** Encoding of hidden states and projection inputs/outputs (forward). */
  activations: z.enum(DTYPES).default("f32"),
  /** Encoding of gradients (backward). */
  gradients: z.enum(DTYPES).default("f32"),
  /** Magnitude top-k on gradients: the fraction of entries sent, or null for dense (§5). */
  topk: z.number().gt(0).lte(1).nullable().default(null),
});

const krSchema = z.strictObject({
  /** all = no KR; kr = kill and revive; random = random subset; oneshot = prune once, no revive. */
  policy: z.enum(["all", "kr", "random", "oneshot"]).default("all"),
  /** Steps with every module active; default KR_DEFAULTS.warmupFraction of the run. */
  warmup: z.number().int().min(0).optional(),
  /** Steps between decisions; null = one pass over the data, at most KR_DEFAULTS.periodFraction of the run. */
  period: z.number().int().min(1).nullable().default(null),
  /** Steps a revived module is probed before it is ranked again; null = KR_DEFAULTS.probeOfPeriod of a period. */
  probe: z.number().int().min(1).nullable().default(null),
  /** q: fraction of killed modules revived at each decision (default KR_DEFAULTS.reviveFraction). */
  revive_fraction: z.number().min(0).max(1).default(KR_DEFAULTS.reviveFraction),
  mode: z.enum(["topk", "threshold"]).default("topk"),
  /** Threshold mode: kill when c_i < tau · median(c_active). */
  tau: z.number().positive().nullable().default(null),
  /** Modules in the exported adapter. */
  export: z.enum(["active", "all"]).default("active"),
  /** The score devices report: the paper's parameter change, the effective-weight change, or Σ|θ·∇θ|. */
  score: z.enum(["change", "effective", "sensitivity"]).default(KR_DEFAULTS.score),
  /** ρ for every device of this job, overriding their tiers' budgets; null = the tier's. */
  budget: z.number().gt(0).lte(1).nullable().default(null),
  /** What ρ is a share of: the module count, or the modules' summed cost r·(in + out). */
  budget_over: z.enum(["count", "cost"]).default("count"),
  /**
   * Learning-rate multiplier of the modules trained after the warm-up (not for `all`); default
   * KR_DEFAULTS.lrScale, or 1 with rank reallocation (the kept modules then hold all's parameters).
   */
  lr_scale: z.number().gt(0).max(100).optional(),
  /** kr hysteresis: a probe displaces an active module only if its score is this factor higher. */
  margin: z.number().min(1).max(100).optional(),
  /**
   * Rank reallocation: kept modules grow to rank × this after the warm-up ("budget": as many
   * LoRA parameters as `all` trains); 1 = no growth.
   */
  rank_scale: z.union([z.number().min(1).max(64), z.literal("budget")]).default(1),
}).transform(({ rank_scale, ...kr }) => ({
  ...kr,
  lr_scale: kr.lr_scale ?? defaultLrScale(rank_scale),
  rank_scale,
}));

/** The job schema under `limits`; its output is the normalized spec that is stored. */
export function jobSpecSchema(limits: JobLimits = DEFAULT_JOB_LIMITS) {
  const max = (n: number, what: string) => ({
    error: `must be ≤ ${n} (this coordinator's ${what} limit)`,
  });
  return z.strictObject({
    name: displayName(100).optional(),
    /** A model path or known name as the CLI takes it (DLORA.md §8), resolved when the job runs. */
    base_model: z.string().min(1).max(1024).regex(PRINTABLE, {
      error: "must not contain control characters",
    }),
    targets: z.array(z.enum(PROJS)).min(1).default([...PROJS])
      .transform((ts) => PROJS.filter((p) => ts.includes(p))),
    rank: z.number().int().min(1).max(limits.maxRank, max(limits.maxRank, "rank")).default(8),
    /** LoRA alpha; the scale is alpha / rank. Default: rank (scale 1). */
    alpha: z.number().positive().max(1e6).optional(),
    lr: z.number().positive().max(1).default(1e-3),
    steps: z.number().int().min(1).max(limits.maxSteps, max(limits.maxSteps, "steps")).default(
      100,
    ),
    batch: z.number().int().min(1).max(limits.maxBatch, max(limits.maxBatch, "batch")).default(8),
    seq_len: z.number().int().min(2).max(limits.maxSeqLen, max(limits.maxSeqLen, "seq_len"))
      .default(256),
    seed: z.number().int().min(0).max(2 ** 32 - 1).default(0),
    codec: codecSchema.default({ activations: "f32", gradients: "f32", topk: null }),
    kr: krSchema.default({
      policy: "all",
      period: null,
      probe: null,
      revive_fraction: KR_DEFAULTS.reviveFraction,
      mode: "topk",
      tau: null,
      export: "active",
      score: KR_DEFAULTS.score,
      budget: null,
      budget_over: "count",
      lr_scale: KR_DEFAULTS.lrScale,
      rank_scale: 1,
    }),
    devices: z.array(z.string().regex(DEVICE_ID, { error: "is not a device id (dev_…)" }))
      .min(1)
      .max(limits.maxDevicesPerJob, max(limits.maxDevicesPerJob, "devices per job")),
  }).superRefine((job, ctx) => {
    // zod runs refinements after continuable issues too: only judge the product of two
    // values that are themselves within their limits.
    const tokens = job.batch * job.seq_len;
    const inLimits = job.batch <= limits.maxBatch && job.seq_len <= limits.maxSeqLen;
    if (inLimits && tokens > limits.maxTokensPerStep) {
      ctx.addIssue({
        code: "custom",
        path: ["batch"],
        message: `batch × seq_len = ${tokens} tokens per step > ${limits.maxTokensPerStep} ` +
          `(this coordinator's limit)`,
      });
    }
    const seen = new Set<string>();
    job.devices.forEach((id, i) => {
      if (seen.has(id)) {
        ctx.addIssue({ code: "custom", path: ["devices", i], message: `${id} is listed twice` });
      }
      seen.add(id);
    });
    if (job.kr.mode === "threshold" && job.kr.tau === null) {
      ctx.addIssue({ code: "custom", path: ["kr", "tau"], message: "threshold mode needs tau" });
    }
  }).transform((job) => ({
    ...job,
    name: job.name ?? null,
    alpha: job.alpha ?? job.rank,
    kr: {
      ...job.kr,
      warmup: job.kr.warmup ?? Math.max(1, Math.round(KR_DEFAULTS.warmupFraction * job.steps)),
    },
  }));
}

export type JobSpec = z.output<ReturnType<typeof jobSpecSchema>>;

/** Field path ("capability.gflops", "devices.2", "(body)") → messages. */
export type FieldErrors = Record<string, string[]>;

export function fieldErrors(error: z.ZodError): FieldErrors {
  const out: FieldErrors = {};
  for (const issue of error.issues) {
    const path = issue.path.length === 0 ? "(body)" : issue.path.map(String).join(".");
    (out[path] ??= []).push(issue.message);
  }
  return out;
}

/** One line a person reads: "seq_len: must be ≤ 4096 …; devices.0: is not a device id". */
export function describeErrors(fields: FieldErrors): string {
  return Object.entries(fields).map(([path, msgs]) => `${path}: ${msgs.join(", ")}`).join("; ");
}
