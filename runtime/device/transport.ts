/**
 * The device's end of the step stream's connection: one WebSocket of binary frames. The device
 * token goes in the upgrade request's `Authorization: Bearer` header (both clients used here can
 * set it; a browser's WebSocket cannot and would need another scheme).
 */
import { Mailbox } from "../protocol/mailbox.ts";
import { RawWebSocket } from "./websocket.ts";

/** A bidirectional frame pipe; `next` rejects with ConnectionClosed once it ends. */
export interface FrameTransport {
  send(frame: Uint8Array): void;
  next(timeoutMs: number, what: string): Promise<Uint8Array>;
  close(code?: number, reason?: string): void;
  /** Resolves once the connection has ended. */
  readonly closed: Promise<{ code: number; reason: string }>;
}

/** The connection ended (by either side) while a frame was awaited. */
export class ConnectionClosed extends Error {
  constructor(readonly code: number, readonly reason: string) {
    super(`the coordinator closed the session (code ${code}${reason ? `: ${reason}` : ""})`);
    this.name = "ConnectionClosed";
  }
}

export interface SocketOptions {
  /** Give up opening after this long (default 30 s). */
  openTimeoutMs?: number;
}

/**
 * Opens the session WebSocket with the device's bearer token: ws:// through RawWebSocket
 * (TCP_NODELAY, readable refusals), wss:// through the built-in client.
 */
export async function openSessionSocket(
  url: string,
  token: string,
  opts: SocketOptions = {},
): Promise<FrameTransport> {
  if (url.startsWith("ws://")) return await openRaw(url, token, opts);
  return await openBuiltin(url, token, opts);
}

function closedSignal() {
  let resolve!: (v: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => (resolve = r));
  return { closed, resolve };
}

async function openRaw(url: string, token: string, opts: SocketOptions): Promise<FrameTransport> {
  const inbox = new Mailbox<Uint8Array>();
  const { closed, resolve } = closedSignal();
  const timeoutMs = opts.openTimeoutMs ?? 30_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const socket = await Promise.race([
    RawWebSocket.connect(url, {
      onMessage: (data) => inbox.push(data),
      onClose: (code, reason) => {
        inbox.close(new ConnectionClosed(code, reason), { drain: true });
        resolve({ code, reason });
      },
    }, { headers: { authorization: `Bearer ${token}` } }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no WebSocket connection to ${url} within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  return {
    send(frame) {
      if (!socket.open) {
        const peer = socket.peerClose;
        throw inbox.closed ??
          new ConnectionClosed(peer?.code ?? 1006, peer?.reason ?? "the connection is closed");
      }
      socket.send(frame);
    },
    next: (timeoutMs, what) => inbox.next(timeoutMs, what),
    close: (code = 1000, reason = "") => socket.close(code, reason),
    closed,
  };
}

function openBuiltin(url: string, token: string, opts: SocketOptions): Promise<FrameTransport> {
  const inbox = new Mailbox<Uint8Array>();
  // Deno's WebSocket accepts request headers as a second-argument option.
  const init = { headers: { authorization: `Bearer ${token}` } } as unknown as string[];
  const socket = new WebSocket(url, init);
  socket.binaryType = "arraybuffer";
  const { closed, resolve } = closedSignal();
  socket.onmessage = (e: MessageEvent) => {
    if (e.data instanceof ArrayBuffer) inbox.push(new Uint8Array(e.data));
  };
  socket.onclose = (e: CloseEvent) => {
    inbox.close(new ConnectionClosed(e.code, e.reason), { drain: true });
    resolve({ code: e.code, reason: e.reason });
  };
  const transport: FrameTransport = {
    send(frame) {
      if (socket.readyState !== WebSocket.OPEN) {
        throw inbox.closed ?? new ConnectionClosed(1006, "the connection is not open");
      }
      socket.send(frame);
    },
    next: (timeoutMs, what) => inbox.next(timeoutMs, what),
    close(code = 1000, reason = "") {
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
        socket.close(code, reason);
      }
    },
    closed,
  };
  const timeoutMs = opts.openTimeoutMs ?? 30_000;
  return new Promise((resolveOpen, reject) => {
    const timer = setTimeout(() => {
      socket.onopen = null;
      socket.close();
      reject(new Error(`no WebSocket connection to ${url} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.onopen = () => {
      clearTimeout(timer);
      resolveOpen(transport);
    };
    socket.onerror = (e: Event) => {
      if (socket.readyState === WebSocket.OPEN) return;
      clearTimeout(timer);
      reject(
        new Error(
          `cannot open the step stream at ${url}: ${
            (e as ErrorEvent).message ?? "connection refused"
          } (a refused token or job shows as a failed upgrade; check GET /v1/jobs/:id)`,
        ),
      );
    };
  });
}
