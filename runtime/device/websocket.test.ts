import { assertEquals } from "../../tests/util.ts";
import { RawWebSocket, xorMask } from "./websocket.ts";

Deno.test("xorMask equals the byte-wise RFC 6455 mask at every alignment and length", () => {
  const mask = new Uint8Array([0x12, 0xa5, 0xff, 0x3c]);
  const backing = new Uint8Array(80);
  for (let i = 0; i < backing.length; i++) backing[i] = (i * 37 + 11) & 0xff;
  for (let offset = 0; offset < 5; offset++) {
    for (let n = 0; n <= 23; n++) {
      const bytes = backing.slice().subarray(offset, offset + n);
      const want = bytes.map((b, i) => b ^ mask[i & 3]);
      xorMask(bytes, mask);
      assertEquals([...bytes], [...want], `offset ${offset} length ${n}`);
    }
  }
});

Deno.test("RawWebSocket: messages of many sizes echo back byte for byte", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.binaryType = "arraybuffer";
    socket.onmessage = (e) => socket.send(e.data as ArrayBuffer);
    return response;
  });
  const got: Uint8Array[] = [];
  let wake = () => {};
  const ws = await RawWebSocket.connect(`ws://127.0.0.1:${server.addr.port}/`, {
    onMessage: (data) => {
      got.push(data);
      wake();
    },
    onClose: () => {},
  });
  try {
    const sizes = [0, 1, 3, 125, 126, 127, 65535, 65536, 70_001, 600_003];
    for (const n of sizes) {
      const msg = new Uint8Array(n);
      for (let i = 0; i < n; i++) msg[i] = (i * 131 + n) & 0xff;
      // An unaligned view: the writer must mask the bytes it is given, not its whole buffer.
      const view = new Uint8Array(n + 3);
      view.set(msg, 3);
      ws.send(view.subarray(3));
      while (got.length === 0) await new Promise<void>((r) => (wake = r));
      const echo = got.shift()!;
      assertEquals(echo.length, n);
      assertEquals(echo.every((b, i) => b === msg[i]), true, `message of ${n} bytes`);
    }
  } finally {
    ws.close();
    await server.shutdown();
  }
});
