import { assert, assertEquals, assertRejects } from "../tests/util.ts";
import {
  base64url,
  bearerToken,
  ensureAdminToken,
  hashToken,
  newId,
  newToken,
  timingSafeEqual,
} from "./auth.ts";
import { MemoryStore } from "./store.ts";

Deno.test("auth: tokens are 256-bit base64url, ids are prefixed, digests are hex SHA-256", async () => {
  const t = newToken();
  assert(/^[A-Za-z0-9_-]{43}$/.test(t), t);
  assert(newToken() !== t, "fresh tokens differ");
  assert(/^dev_[A-Za-z0-9_-]{16}$/.test(newId("dev")));
  assertEquals(base64url(new Uint8Array([0xfb, 0xff])), "-_8");
  // SHA-256("abc"), FIPS 180-2 appendix B.1.
  assertEquals(
    await hashToken("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("auth: constant-time equality and Bearer parsing", () => {
  assert(timingSafeEqual("abcd", "abcd"));
  assert(!timingSafeEqual("abcd", "abce"));
  assert(!timingSafeEqual("abcd", "abc"));
  assert(!timingSafeEqual("", "a"));
  assertEquals(bearerToken("Bearer abc-_.~+/="), "abc-_.~+/=");
  assertEquals(bearerToken("bearer  xyz "), "xyz");
  assertEquals(bearerToken("Basic dXNlcjpwYXNz"), null);
  assertEquals(bearerToken("Bearer two words"), null);
  assertEquals(bearerToken(undefined), null);
});

Deno.test("auth: admin token from env, generated once, then kept", async () => {
  const store = new MemoryStore();
  const first = await ensureAdminToken(store, undefined);
  assertEquals(first.source, "generated");
  assert(first.generated !== null);
  assertEquals(await store.getAdminTokenHash(), await hashToken(first.generated));
  const again = await ensureAdminToken(store, "");
  assertEquals([again.source, again.generated], ["stored", null]);
  const env = "x".repeat(40);
  const fromEnv = await ensureAdminToken(store, env);
  assertEquals([fromEnv.source, fromEnv.generated], ["env", null]);
  assertEquals(await store.getAdminTokenHash(), await hashToken(env));
  await assertRejects(() => ensureAdminToken(store, "short"), /at least 32 characters.*got 5/);
  await assertRejects(() => ensureAdminToken(store, "a b".repeat(20)), /at least 32 characters/);
});
