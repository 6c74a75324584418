/**
 * The coordinator on a real socket (Deno only): Deno.serve around the app, a Deno KV store and
 * the admin token set up at start. The app core (app.ts) knows none of this.
 */
import { type CoordinatorConfig, createApp } from "./app.ts";
import { type AdminTokenSetup, ensureAdminToken } from "./auth.ts";
import type { Executor, LogFields, Logger } from "./deps.ts";
import { type CoordinatorMetrics, createCoordinatorMetrics } from "./metrics.ts";
import type { Store } from "./store.ts";
import { KvStore } from "./store_kv.ts";

export const DEFAULT_PORT = 8470;
export const DEFAULT_HOST = "127.0.0.1";

export interface ServeOptions {
  /** TCP port; 0 picks a free one (see `Coordinator.port`). Default 8470. */
  port?: number;
  /** Address to bind; default 127.0.0.1 (loopback only). */
  host?: string;
  /** Deno KV file; ":memory:" keeps nothing. Default: see `defaultKvPath`. Ignored with `store`. */
  kv?: string;
  /** A store to use instead of opening `kv` (it is not closed at shutdown). */
  store?: Store;
  /**
   * The step stream: an executor, or a function building one from the server's metrics, log
   * and store (e.g. `(deps) => new StepExecutor(deps)`); null/absent answers sessions with 503.
   */
  executor?: Executor | null | ((deps: ExecutorDeps) => Executor);
  config?: Partial<CoordinatorConfig>;
  /** The admin token to install; default $DLORA_ADMIN_TOKEN, else the stored one or a new one. */
  adminToken?: string;
  log?: Logger;
  env?: (name: string) => string | undefined;
}

/** What serve() hands an executor factory. */
export interface ExecutorDeps {
  metrics: CoordinatorMetrics;
  log: Logger;
  store: Store;
}

export interface Coordinator {
  url: string;
  port: number;
  host: string;
  /** The KV path in use, or "(caller's store)". */
  storePath: string;
  admin: AdminTokenSetup;
  store: Store;
  metrics: CoordinatorMetrics;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
  /** Stops accepting, waits for in-flight requests, closes the store if serve() opened it. */
  shutdown(): Promise<void>;
}

/** $DLORA_HOME/coordinator.kv, else ./.dlora/coordinator.kv (the model resolver's folders). */
export function defaultKvPath(env: (name: string) => string | undefined): string {
  const home = env("DLORA_HOME");
  return `${home !== undefined && home !== "" ? home : ".dlora"}/coordinator.kv`;
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\./.test(host);
}

/** Log lines to stderr: `coordinator info: message {"field":…}`. */
export const stderrLogger: Logger = {
  info: (m: string, f?: LogFields) => writeLog("info", m, f),
  warn: (m: string, f?: LogFields) => writeLog("warn", m, f),
  error: (m: string, f?: LogFields) => writeLog("error", m, f),
};

function writeLog(level: string, message: string, fields?: LogFields): void {
  console.error(`coordinator ${level}: ${message}${fields ? ` ${JSON.stringify(fields)}` : ""}`);
}

export async function serve(opts: ServeOptions = {}): Promise<Coordinator> {
  const env = opts.env ?? ((name: string) => Deno.env.get(name));
  const host = opts.host ?? DEFAULT_HOST;
  const port = opts.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`port must be an integer in 0..65535, got ${port}`);
  }
  if (opts.config?.openRegistration && !isLoopback(host)) {
    throw new Error(
      `open registration lets anyone who reaches ${host} register a device; it is only ` +
        `allowed on a loopback address (127.0.0.1, ::1). Use enrollment tokens instead.`,
    );
  }
  const log = opts.log ?? stderrLogger;
  let store = opts.store;
  let storePath = "(caller's store)";
  let ownsStore = false;
  if (store === undefined) {
    storePath = opts.kv ?? defaultKvPath(env);
    if (storePath !== ":memory:") {
      const slash = storePath.lastIndexOf("/");
      if (slash > 0) await Deno.mkdir(storePath.slice(0, slash), { recursive: true });
    }
    store = await KvStore.open(storePath);
    ownsStore = true;
  }
  try {
    const admin = await ensureAdminToken(store, opts.adminToken ?? env("DLORA_ADMIN_TOKEN"));
    const metrics = createCoordinatorMetrics();
    const executor = typeof opts.executor === "function"
      ? opts.executor({ metrics, log, store })
      : opts.executor ?? null;
    const app = createApp({
      store,
      executor,
      config: opts.config,
      log,
      metrics,
    });
    const server = Deno.serve(
      { port, hostname: host, onListen: () => {} },
      (req, info) => app.fetch(req, { remoteAddr: { hostname: info.remoteAddr.hostname } }),
    );
    const bound = server.addr.port;
    const urlHost = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
    const finished = server.finished;
    const openedStore = store;
    return {
      url: `http://${urlHost}:${bound}`,
      port: bound,
      host,
      storePath,
      admin,
      store,
      metrics,
      finished,
      async shutdown() {
        // Sessions first: an open WebSocket would keep the server's graceful shutdown waiting.
        await executor?.close?.();
        await server.shutdown();
        if (ownsStore) openedStore.close();
      },
    };
  } catch (e) {
    if (ownsStore) store.close();
    throw e;
  }
}
