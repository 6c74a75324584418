/**
 * A minimal WebSocket client (RFC 6455) over a Deno TCP connection with TCP_NODELAY (Deno edge).
 *
 * Why not the built-in `WebSocket`: it writes a message's header and payload separately without
 * TCP_NODELAY, so every message of a few kB waits for the peer's delayed ACK — about 40 ms per
 * message on Linux loopback (measured: an 8 KiB message's round trip takes 44 ms, a 70 KiB one
 * 0.4 ms). A training step makes dozens of such round trips. This client writes each message
 * in one piece with Nagle off. It also reports a refused upgrade with its HTTP status and the
 * coordinator's error message, which the built-in client hides.
 *
 * ws:// only (wss:// goes through the built-in client, see transport.ts). Binary messages in
 * and out; text messages are delivered as their UTF-8 bytes; fragmented messages are joined.
 */

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const utf8 = new TextEncoder();

/** The server refused the upgrade (e.g. 401, 403, 409). */
export class UpgradeRefused extends Error {
  constructor(readonly status: number, readonly body: string, url: string) {
    let detail = body.trim().slice(0, 300);
    try {
      const e = JSON.parse(body)?.error;
      if (e?.message) detail = e.message;
    } catch {
      // not JSON: keep the text
    }
    super(
      `the coordinator refused the step stream at ${url}: HTTP ${status}${
        detail ? `: ${detail}` : ""
      }`,
    );
    this.name = "UpgradeRefused";
  }
}

export interface RawWebSocketHandlers {
  onMessage(data: Uint8Array): void;
  onClose(code: number, reason: string): void;
}

export interface RawWebSocketOptions {
  headers?: Record<string, string>;
  /** Largest message accepted (default 80 MiB). */
  maxMessageBytes?: number;
}

/** Growable byte buffer for parsing. */
class ByteQueue {
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  get length(): number {
    return this.#end - this.#start;
  }

  push(chunk: Uint8Array): void {
    if (this.#end + chunk.length > this.#buf.length) {
      const live = this.length;
      if (live + chunk.length <= this.#buf.length) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        const next = new Uint8Array(Math.max(2 * this.#buf.length, 2 * (live + chunk.length)));
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = next;
      }
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  peek(n: number): Uint8Array {
    return this.#buf.subarray(this.#start, this.#start + n);
  }

  /** Drops n bytes. */
  skip(n: number): void {
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  take(n: number): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return out;
  }
}

export class RawWebSocket {
  #conn: Deno.TcpConn;
  #handlers: RawWebSocketHandlers;
  #maxMessage: number;
  #closed = false;
  #closeSent = false;
  #fragments: Uint8Array[] = [];
  /** Writes in order: each waits for the one before. */
  #pending: Promise<void> = Promise.resolve();
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #writeFailed = false;
  /** The peer's close frame, once received. */
  #peerClose: { code: number; reason: string } | null = null;
  readonly #readBuffer = new Uint8Array(256 * 1024);

  private constructor(
    conn: Deno.TcpConn,
    rest: ByteQueue,
    handlers: RawWebSocketHandlers,
    maxMessage: number,
  ) {
    this.#conn = conn;
    this.#handlers = handlers;
    this.#maxMessage = maxMessage;
    void this.#readLoop(rest);
  }

  /** The peer's close code and reason, once its close frame arrived. */
  get peerClose(): { code: number; reason: string } | null {
    return this.#peerClose;
  }

  get open(): boolean {
    return !this.#closed && !this.#closeSent && !this.#writeFailed;
  }

  /** Connects, upgrades, and starts delivering messages to `handlers`. */
  static async connect(
    url: string,
    handlers: RawWebSocketHandlers,
    opts: RawWebSocketOptions = {},
  ): Promise<RawWebSocket> {
    const u = new URL(url);
    if (u.protocol !== "ws:") throw new Error(`RawWebSocket: only ws:// URLs, got ${url}`);
    const port = Number(u.port || 80);
    const conn = await Deno.connect({ hostname: u.hostname.replace(/^\[|\]$/g, ""), port });
    conn.setNoDelay(true);
    try {
      const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
      const lines = [
        `GET ${u.pathname}${u.search} HTTP/1.1`,
        `Host: ${u.host}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${key}`,
        "Sec-WebSocket-Version: 13",
        ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
      ];
      await writeAll(conn, utf8.encode(lines.join("\r\n") + "\r\n\r\n"));
      const q = new ByteQueue();
      const head = await readHead(conn, q, url);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0])?.[1] ?? 0);
      const headers = new Map<string, string>();
      for (const line of head.slice(1)) {
        const i = line.indexOf(":");
        if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
      if (status !== 101) {
        const length = Number(headers.get("content-length") ?? 0);
        while (q.length < length) {
          const chunk = await readChunk(conn);
          if (chunk === null) break;
          q.push(chunk);
        }
        throw new UpgradeRefused(
          status,
          new TextDecoder().decode(q.take(Math.min(q.length, length))),
          url,
        );
      }
      const digest = await crypto.subtle.digest("SHA-1", utf8.encode(key + GUID));
      const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
      if (headers.get("sec-websocket-accept") !== accept) {
        throw new Error(
          `${url}: the server's WebSocket handshake is invalid (Sec-WebSocket-Accept ${
            headers.get("sec-websocket-accept")
          } ≠ ${accept})`,
        );
      }
      return new RawWebSocket(conn, q, handlers, opts.maxMessageBytes ?? 80 * 1024 * 1024);
    } catch (e) {
      try {
        conn.close();
      } catch {
        // already closed
      }
      throw e;
    }
  }

  /** Sends one binary message, header and masked payload in one write. */
  send(data: Uint8Array): void {
    if (!this.open) throw new Error("RawWebSocket.send: the connection is closed");
    this.#write(0x2, data);
  }

  /** Starts the closing handshake. */
  close(code = 1000, reason = ""): void {
    if (this.#closed || this.#closeSent) return;
    const r = utf8.encode(reason).subarray(0, 123);
    const body = new Uint8Array(2 + r.length);
    new DataView(body.buffer).setUint16(0, code);
    body.set(r, 2);
    this.#write(0x8, body);
    this.#closeSent = true;
    // A peer that never answers the close does not keep the socket open.
    clearTimeout(this.#closeTimer);
    this.#closeTimer = setTimeout(() => this.#finish(code, reason), 2_000);
  }

  #write(opcode: number, payload: Uint8Array): void {
    const n = payload.length;
    const ext = n < 126 ? 0 : n < 65536 ? 2 : 8;
    const frame = new Uint8Array(2 + ext + 4 + n);
    frame[0] = 0x80 | opcode;
    const v = new DataView(frame.buffer);
    if (ext === 0) frame[1] = 0x80 | n;
    else if (ext === 2) {
      frame[1] = 0x80 | 126;
      v.setUint16(2, n);
    } else {
      frame[1] = 0x80 | 127;
      v.setBigUint64(2, BigInt(n));
    }
    const maskAt = 2 + ext;
    crypto.getRandomValues(frame.subarray(maskAt, maskAt + 4));
    const mask = frame.subarray(maskAt, maskAt + 4), at = maskAt + 4;
    frame.set(payload, at);
    xorMask(frame.subarray(at), mask);
    this.#pending = this.#pending.then(() => writeAll(this.#conn, frame)).catch(() => {
      // Writing fails once the peer has closed. Its close frame may still sit unread: give the
      // read loop a moment to report it before calling the connection simply broken.
      this.#writeFailed = true;
      this.#closeTimer ??= setTimeout(() => {
        const peer = this.#peerClose;
        this.#finish(peer?.code ?? 1006, peer?.reason ?? "the connection broke (write failed)");
      }, 200);
    });
  }

  #finish(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#closeTimer);
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    this.#handlers.onClose(code, reason);
  }

  async #readLoop(q: ByteQueue): Promise<void> {
    let code = 1006, reason = "";
    try {
      for (;;) {
        const frame = parseFrame(q, this.#maxMessage);
        if (frame === null) {
          const chunk = await readChunk(this.#conn, this.#readBuffer);
          if (chunk === null) break;
          q.push(chunk);
          continue;
        }
        const { opcode, fin, payload } = frame;
        if (opcode === 0x8) {
          code = payload.length >= 2 ? new DataView(payload.buffer).getUint16(0) : 1005;
          reason = new TextDecoder().decode(payload.subarray(2));
          this.#peerClose = { code, reason };
          if (!this.#closeSent) {
            this.#write(0x8, payload.subarray(0, 2));
            this.#closeSent = true;
          }
          await this.#pending;
          break;
        }
        if (opcode === 0x9) {
          if (!this.#closeSent) this.#write(0xa, payload);
          continue;
        }
        if (opcode === 0xa) continue;
        if (opcode === 0x1 || opcode === 0x2 || opcode === 0x0) {
          this.#fragments.push(payload);
          if (!fin) continue;
          const parts = this.#fragments;
          this.#fragments = [];
          this.#handlers.onMessage(parts.length === 1 ? parts[0] : concat(parts));
          continue;
        }
        throw new Error(`unknown WebSocket opcode ${opcode}`);
      }
    } catch (e) {
      code = 1002;
      reason = (e as Error).message;
    }
    this.#finish(code, reason);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One whole frame off the queue, or null when more bytes are needed. */
function parseFrame(
  q: ByteQueue,
  maxMessage: number,
): { opcode: number; fin: boolean; payload: Uint8Array } | null {
  if (q.length < 2) return null;
  const h = q.peek(14);
  const fin = (h[0] & 0x80) !== 0, opcode = h[0] & 0x0f, masked = (h[1] & 0x80) !== 0;
  let n = h[1] & 0x7f, at = 2;
  if (n === 126) {
    if (q.length < 4) return null;
    n = (h[2] << 8) | h[3];
    at = 4;
  } else if (n === 127) {
    if (q.length < 10) return null;
    n = Number(new DataView(h.buffer, h.byteOffset + 2, 8).getBigUint64(0));
    at = 10;
  }
  if (n > maxMessage) throw new Error(`WebSocket message of ${n} bytes exceeds ${maxMessage}`);
  const maskLen = masked ? 4 : 0;
  if (q.length < at + maskLen + n) return null;
  const mask = masked ? q.peek(at + 4).slice(at) : null;
  q.skip(at + maskLen);
  const payload = q.take(n);
  if (mask !== null) xorMask(payload, mask);
  return { opcode, fin, payload };
}

/** bytes[i] ^= mask[i & 3] (RFC 6455 masking), four bytes at a time where aligned. */
export function xorMask(bytes: Uint8Array, mask: Uint8Array): void {
  const n = bytes.length;
  let i = 0;
  for (; i < n && (bytes.byteOffset + i) % 4 !== 0; i++) bytes[i] ^= mask[i & 3];
  const words = (n - i) >> 2;
  if (words > 0) {
    // The mask as a word read at offset i of the payload (platform byte order).
    const m = new Uint8Array(4);
    for (let j = 0; j < 4; j++) m[j] = mask[(i + j) & 3];
    const m32 = new Uint32Array(m.buffer)[0];
    const w = new Uint32Array(bytes.buffer, bytes.byteOffset + i, words);
    for (let j = 0; j < words; j++) w[j] ^= m32;
    i += 4 * words;
  }
  for (; i < n; i++) bytes[i] ^= mask[i & 3];
}

async function readChunk(
  conn: Deno.Conn,
  buf = new Uint8Array(64 * 1024),
): Promise<Uint8Array | null> {
  const n = await conn.read(buf);
  return n === null ? null : buf.subarray(0, n);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Reads the HTTP response head (status line + headers); leaves what follows in `q`. */
async function readHead(conn: Deno.Conn, q: ByteQueue, url: string): Promise<string[]> {
  for (;;) {
    const view = q.peek(q.length);
    for (let i = 3; i < view.length; i++) {
      if (view[i - 3] === 13 && view[i - 2] === 10 && view[i - 1] === 13 && view[i] === 10) {
        const head = new TextDecoder().decode(q.take(i + 1));
        return head.trimEnd().split("\r\n");
      }
    }
    if (q.length > 64 * 1024) throw new Error(`${url}: the upgrade response head is too long`);
    const chunk = await readChunk(conn);
    if (chunk === null) {
      throw new Error(`${url}: the server closed the connection during the upgrade`);
    }
    q.push(chunk);
  }
}
