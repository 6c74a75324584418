import { assert, assertEquals, assertRejects } from "../tests/util.ts";
import { createApp } from "./app.ts";
import { ensureAdminToken } from "./auth.ts";
import { type DeviceRecord, type JobRecord, MemoryStore, type Store } from "./store.ts";
import { KvStore } from "./store_kv.ts";
import { ManualClock, snapshot, TEST_ADMIN_TOKEN } from "./testing.ts";

function device(id: string, tokenHash: string): DeviceRecord {
  return {
    id,
    name: null,
    tokenHash,
    capability: { gflops: 10, threads: 2, memoryMb: 2048 },
    measured: null,
    tierOverride: null,
    status: "active",
    createdAt: 1,
    lastSeenAt: null,
  };
}

function job(id: string): JobRecord {
  return {
    id,
    spec: { devices: ["dev_a"] } as unknown as JobRecord["spec"],
    status: "pending",
    createdAt: 1,
    updatedAt: 1,
    statusReason: null,
  };
}

/** The behaviour both stores must share. */
async function storeContract(store: Store): Promise<void> {
  assertEquals(await store.getAdminTokenHash(), null);
  await store.setAdminTokenHash("aa");
  assertEquals(await store.getAdminTokenHash(), "aa");

  assert(await store.registerDevice(device("dev_a", "h1")));
  await assertRejects(() => store.registerDevice(device("dev_a", "h2")), /already exists/);
  await assertRejects(() => store.registerDevice(device("dev_b", "h1")), /token reused/);
  assertEquals((await store.findDeviceByTokenHash("h1"))?.id, "dev_a");
  assertEquals(await store.findDeviceByTokenHash("h9"), null);

  // Enrollment: consumed atomically with the registration, refused when used up or expired.
  await store.putEnrollment({ tokenHash: "e1", usesLeft: 1, expiresAt: 100, createdAt: 0 });
  assert(await store.registerDevice(device("dev_b", "h2"), { tokenHash: "e1", now: 50 }));
  assertEquals((await store.getEnrollment("e1"))?.usesLeft, 0);
  assert(!(await store.registerDevice(device("dev_c", "h3"), { tokenHash: "e1", now: 50 })));
  await store.putEnrollment({ tokenHash: "e2", usesLeft: 3, expiresAt: 100, createdAt: 0 });
  assert(!(await store.registerDevice(device("dev_c", "h3"), { tokenHash: "e2", now: 100 })));
  assert(!(await store.registerDevice(device("dev_c", "h3"), { tokenHash: "e9", now: 0 })));
  assertEquals(await store.getDevice("dev_c"), null, "a refused registration adds nothing");
  assertEquals(await store.findDeviceByTokenHash("h3"), null);

  // Copies out: mutating a returned record changes nothing stored.
  const got = (await store.getDevice("dev_a"))!;
  got.status = "disabled";
  assertEquals((await store.getDevice("dev_a"))!.status, "active");
  await store.updateDevice({ ...got, name: "renamed" });
  assertEquals((await store.getDevice("dev_a"))!.name, "renamed");
  await assertRejects(() => store.updateDevice({ ...got, tokenHash: "zz" }), /token cannot change/);
  await store.touchDevice("dev_a", 42);
  const touched = (await store.getDevice("dev_a"))!;
  assertEquals([touched.lastSeenAt, touched.name, touched.status], [42, "renamed", "disabled"]);
  assertEquals((await store.listDevices()).map((d) => d.id).sort(), ["dev_a", "dev_b"]);

  await store.createJob(job("job_1"));
  await assertRejects(() => store.createJob(job("job_1")), /already exists/);
  assert(await store.updateJob({ ...job("job_1"), status: "running" }, "pending"));
  assert(!(await store.updateJob({ ...job("job_1"), status: "cancelled" }, "pending")));
  assertEquals((await store.getJob("job_1"))?.status, "running");
  assert(!(await store.updateJob(job("job_2"), "pending")), "no such job");
  assertEquals((await store.listJobs()).length, 1);
  assertEquals((await store.listEnrollments()).length, 2);

  // Module selection: one record per (job, device), replaced whole, copies out.
  const sel = {
    step: 4,
    tier: "B",
    budget: { rho: 0.25 },
    active: ["0.q", "1.v"],
    probing: ["1.v"],
    events: [{ step: 4, kind: "kill", module: "0.k", score: 0.5 }],
    eventsDropped: 0,
  };
  assertEquals(await store.getSelection("job_1", "dev_a"), null);
  assertEquals(await store.listSelections("job_1"), {});
  await store.putSelection("job_1", "dev_a", sel);
  await store.putSelection("job_1", "dev_b", { ...sel, step: 2 });
  await store.putSelection("job_2", "dev_a", { ...sel, step: 9 });
  const mine = (await store.getSelection("job_1", "dev_a"))!;
  assertEquals(mine, sel);
  mine.active.push("2.o");
  assertEquals((await store.getSelection("job_1", "dev_a"))!.active, ["0.q", "1.v"]);
  await store.putSelection("job_1", "dev_a", { ...sel, step: 6, events: [] });
  const listed = await store.listSelections("job_1");
  assertEquals(Object.keys(listed).sort(), ["dev_a", "dev_b"]);
  assertEquals([listed.dev_a.step, listed.dev_a.events, listed.dev_b.step], [6, [], 2]);
}

Deno.test("store: the in-memory store keeps the contract", async () => {
  await storeContract(new MemoryStore());
});

Deno.test("store: the Deno KV store keeps the same contract", async () => {
  const store = await KvStore.open(":memory:");
  try {
    await storeContract(store);
  } finally {
    store.close();
  }
});

Deno.test("store: a KV-backed coordinator keeps devices, jobs and the admin token across restarts", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/coordinator.kv`;
  try {
    const clock = new ManualClock();
    const config = { openRegistration: true };
    let store = await KvStore.open(path);
    await ensureAdminToken(store, TEST_ADMIN_TOKEN);
    let app = createApp({ store, executor: null, clock, config });
    const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };
    const reg = await app.request("/v1/devices", {
      method: "POST",
      body: JSON.stringify({
        name: "gateway",
        capability: { gflops: 3, threads: 1, memory_mb: 512 },
      }),
    });
    assertEquals(reg.status, 201);
    const { device_id, token } = await reg.json();
    const created = await app.request("/v1/jobs", {
      method: "POST",
      headers: admin,
      body: JSON.stringify({ base_model: "stories260K", devices: [device_id], steps: 20 }),
    });
    assertEquals(created.status, 201);
    const jobId = (await created.json()).id;
    const before = await snapshot(store);
    store.close();

    // A new process on the same file: nothing is lost, the old tokens still work.
    store = await KvStore.open(path);
    assertEquals(await snapshot(store), before);
    assertEquals((await ensureAdminToken(store, undefined)).source, "stored");
    app = createApp({ store, executor: null, clock, config });
    const mine = await app.request("/v1/devices/me/jobs", {
      headers: { authorization: `Bearer ${token}` },
    });
    assertEquals(mine.status, 200);
    const jobs = (await mine.json()).jobs;
    assertEquals([jobs.length, jobs[0].id, jobs[0].steps], [1, jobId, 20]);
    const list = await (await app.request("/v1/devices", { headers: admin })).json();
    assertEquals([list.devices[0].name, list.devices[0].tier], ["gateway", "C"]);
    store.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
