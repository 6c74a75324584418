import { assert, assertClose, assertEquals } from "../../tests/util.ts";
import { sharedText, startStack } from "../../coordinator/step_testing.ts";
import { runCli } from "./testing.ts";

Deno.test("dlora device: enrolls, waits for its job, trains over the step stream, writes the adapter", async () => {
  const stack = await startStack();
  const dir = await Deno.makeTempDir({ prefix: "dlora-device-" });
  try {
    const data = `${dir}/notes.txt`;
    await Deno.writeTextFile(data, sharedText("austen/prideprejudice.txt", 8_000));
    const enroll = await stack.call("POST", "/v1/enrollment-tokens", { uses: 1 });
    assertEquals(enroll.status, 201);
    const run = runCli([
      "device",
      "--coordinator",
      stack.url,
      "--enroll",
      enroll.json.token as string,
      "--name",
      "cli-device",
      "--wait-for-job",
      "60",
      "--data",
      data,
      "--out",
      `${dir}/adapter`,
      // The job's batch of 2 as two micro-batches of 1, both in flight (pipelined).
      ...["--micro-batch", "1", "--pipeline", "2"],
      "--json",
    ]);
    // The operator puts the newly registered device into a job.
    let deviceId: string | undefined;
    for (let i = 0; i < 600 && deviceId === undefined; i++) {
      const list = await stack.call("GET", "/v1/devices");
      const devices = list.json.devices as { id: string; name: string }[];
      deviceId = devices.find((d) => d.name === "cli-device")?.id;
      if (deviceId === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    assert(deviceId !== undefined, "the device registered");
    await stack.job({ devices: [deviceId], steps: 4, batch: 2, seq_len: 16 });
    const r = await run;
    assertEquals(r.code, 0, r.stderr);
    const json = r.json!;
    assertEquals(json.device_id, deviceId);
    assertEquals((json.losses as number[]).length, 4);
    assert((json.bytes_up as number) > 0 && (json.bytes_down as number) > 0);
    assert((json.flops as number) > 0);
    const kinds = json.flops_by_kind as Record<string, number>;
    // Backward is twice forward, less ∂X_lora of the first group (layer 0's q, k, v: nothing
    // upstream is trained): 2·M·r·64 each of stories260K's Σ(in+out) = 5 · 1156 per M·r.
    const noDx = 2 * kinds.lora_forward - kinds.lora_backward;
    assert(kinds.lora_forward > 0);
    assertClose([noDx / kinds.lora_forward], [(3 * 64) / (5 * 1156)], { atol: 1e-12, rtol: 1e-9 });
    // Every kind listed, and they add up to the total.
    assertEquals(Object.keys(kinds).sort(), [
      "embedding",
      "head",
      "lora_backward",
      "lora_forward",
      "loss",
      "optimizer",
    ]);
    assertEquals(Object.values(kinds).reduce((a, b) => a + b, 0), json.flops);
    assert(kinds.head > 0 && kinds.loss > 0 && kinds.optimizer > 0);
    assert((json.capability as { gflops: number }).gflops > 0, "capability reported");
    assert(/registered as dev_/.test(r.stderr), "the new token is shown on stderr");
    assert(!r.stdout.includes(r.stderr.match(/token \(shown only now\): (\S+)/)![1]));
    const files = [...Deno.readDirSync(`${dir}/adapter`)].map((e) => e.name).sort();
    assertEquals(files, ["adapter_config.json", "adapter_model.safetensors"]);
  } finally {
    await stack.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dlora device: a wrong token fails with the coordinator's message", async () => {
  const stack = await startStack();
  const dir = await Deno.makeTempDir({ prefix: "dlora-device-" });
  try {
    await Deno.writeTextFile(`${dir}/notes.txt`, "a few private words");
    const r = await runCli([
      "device",
      "--coordinator",
      stack.url,
      "--token",
      "wrong-token",
      "--data",
      `${dir}/notes.txt`,
      "--out",
      `${dir}/adapter`,
    ]);
    assertEquals(r.code, 1);
    assert(/401 invalid or revoked token/.test(r.stderr), r.stderr);
  } finally {
    await stack.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dlora device: --pipeline below 1 is a usage error", async () => {
  const r = await runCli([
    "device",
    ...["--coordinator", "http://127.0.0.1:9", "--token", "t", "--data", "x.txt", "--out", "o"],
    ...["--pipeline", "0"],
  ]);
  assertEquals(r.code, 2, r.stderr);
  assert(/--pipeline must be an integer ≥ 1, got 0/.test(r.stderr), r.stderr);
});
