import { assert, assertEquals, assertThrows, randn, testKernels } from "../../tests/util.ts";
import { encodeControlFrame, encodeTensorFrame } from "./frame.ts";
import { WireStats } from "./stats.ts";

const k = await testKernels();

Deno.test("protocol: WireStats counts bytes and frames per message type and direction", () => {
  const device = new WireStats("device");
  const coordinator = new WireStats("coordinator");
  const h0 = encodeTensorFrame(k, {
    type: "HIDDEN_H0",
    session: 1,
    step: 0,
    tensors: [{ data: randn(12, 1), shape: [3, 4] }],
  });
  const x = encodeTensorFrame(k, {
    type: "GROUP_INPUT",
    session: 1,
    step: 0,
    modules: ["q", "v"],
    tensors: [{ data: randn(12, 2), shape: [3, 4], codec: "bf16" }],
  });
  const ping = encodeControlFrame({ type: "PING", session: 1, step: 0, nonce: 5 });
  device.sent(h0);
  coordinator.received(h0);
  coordinator.sent(x);
  coordinator.sent(x);
  device.received(x);
  device.received(x);
  device.sent(ping);
  device.recordFrame("up", new Uint8Array([1, 2])); // unreadable: counted as INVALID
  assertEquals(device.of("HIDDEN_H0"), {
    bytesUp: h0.length,
    bytesDown: 0,
    framesUp: 1,
    framesDown: 0,
  });
  assertEquals(device.of("GROUP_INPUT"), coordinator.of("GROUP_INPUT"));
  assertEquals(device.of("GROUP_INPUT").bytesDown, 2 * x.length);
  assertEquals(device.bytesUp, h0.length + ping.length + 2);
  assertEquals(device.bytesDown, 2 * x.length);
  assertEquals([device.framesUp, device.framesDown], [3, 2]);
  assertEquals(device.of("INVALID").bytesUp, 2);
  const json = device.toJSON();
  assertEquals(Object.keys(json.byType).sort(), ["GROUP_INPUT", "HIDDEN_H0", "INVALID", "PING"]);
  assertEquals(JSON.parse(JSON.stringify(device)).bytesUp, device.bytesUp);

  const total = new WireStats();
  total.merge(device);
  total.merge(device);
  assertEquals(total.bytesUp, 2 * device.bytesUp);
  assertEquals(total.of("PING").framesUp, 2);
  total.reset();
  assertEquals(total.toJSON(), {
    bytesUp: 0,
    bytesDown: 0,
    framesUp: 0,
    framesDown: 0,
    byType: {},
  });
  assertThrows(() => total.sent(h0), /construct WireStats with a role/);
  assertThrows(() => total.record("up", "HIDDEN_H0", -1), /non-negative/);
  assert(device.role === "device");
});
