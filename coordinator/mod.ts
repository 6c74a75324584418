/**
 * The coordinator's platform-free core: the control-plane app, its dependency interfaces, the
 * store interface with its in-memory implementation, tiers, metrics and the step-stream session.
 * The Deno edge (the server, the Deno KV store, the executor and its model hosts) is imported
 * directly from serve.ts, store_kv.ts, executor.ts and host.ts.
 */
export {
  ApiError,
  type ApiErrorKind,
  type AppDeps,
  type Bindings,
  type CoordinatorConfig,
  createApp,
  DEFAULT_CONFIG,
} from "./app.ts";
export { type AdminTokenSetup, ensureAdminToken, hashToken, newToken } from "./auth.ts";
export {
  type Clock,
  type Executor,
  type Logger,
  type SessionOpen,
  silentLogger,
  systemClock,
} from "./deps.ts";
export {
  type CoordinatorMetrics,
  createCoordinatorMetrics,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
} from "./metrics.ts";
export { DEFAULT_RATE_LIMIT, type RateLimitConfig } from "./ratelimit.ts";
export { DEFAULT_JOB_LIMITS, type JobLimits, type JobSpec, type WireDtype } from "./schemas.ts";
export {
  type DeviceRecord,
  type EnrollmentRecord,
  FINAL_JOB_STATUSES,
  type JobRecord,
  type JobStatus,
  MemoryStore,
  type Store,
} from "./store.ts";
export {
  assignTier,
  type Capability,
  DEFAULT_TIERS,
  deviceTier,
  type Measured,
  type Tier,
  type TierAssignment,
  type TierBudget,
  tierBudget,
  type TiersConfig,
} from "./tiers.ts";
export {
  allModuleKeys,
  CoordinatorSession,
  type HookLink,
  RemoteLoraHooks,
  type SessionEvents,
  type SessionModel,
  type SessionSpec,
  type StepReport,
} from "./session.ts";
