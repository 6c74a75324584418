/**
 * Credentials: 256-bit random bearer tokens (base64url), kept only as SHA-256 digests and
 * compared in constant time. Web Crypto only, so the app core stays platform-free.
 */
import type { Store } from "./store.ts";

/** base64url without padding (RFC 4648 §5). */
export function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A fresh bearer token: 32 random bytes, 43 base64url characters. */
export function newToken(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

/** A short random id with a kind prefix ("dev_…", "job_…"): 96 random bits. */
export function newId(prefix: string): string {
  return `${prefix}_${base64url(crypto.getRandomValues(new Uint8Array(12)))}`;
}

/** Hex SHA-256 of the token's UTF-8 bytes: what the store keeps instead of the token. */
export async function hashToken(token: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Equality whose time depends only on the lengths (digests have a fixed length, so it leaks
 * nothing about where two digests differ).
 */
export function timingSafeEqual(a: string, b: string): boolean {
  const n = Math.max(a.length, b.length);
  let diff = a.length ^ b.length;
  for (let i = 0; i < n; i++) {
    diff |= (i < a.length ? a.charCodeAt(i) : 0) ^ (i < b.length ? b.charCodeAt(i) : 0);
  }
  return diff === 0;
}

/** The token of an `Authorization: Bearer <token>` header, or null when there is none. */
export function bearerToken(header: string | undefined | null): string | null {
  if (!header) return null;
  const m = /^Bearer[ ]+([A-Za-z0-9._~+/-]+=*)[ ]*$/i.exec(header);
  return m ? m[1] : null;
}

export interface AdminTokenSetup {
  /** The new token when one was generated: show it once, it is not stored anywhere. */
  generated: string | null;
  source: "env" | "generated" | "stored";
}

/**
 * The admin credential at startup: a token from the environment (DLORA_ADMIN_TOKEN) replaces
 * the stored digest; otherwise the stored digest stays; with neither, a fresh token is made and
 * only its digest kept, so the caller must print it now or it is lost.
 */
export async function ensureAdminToken(
  store: Store,
  fromEnv: string | undefined,
): Promise<AdminTokenSetup> {
  if (fromEnv !== undefined && fromEnv !== "") {
    if (fromEnv.length < 32 || bearerToken(`Bearer ${fromEnv}`) === null) {
      throw new Error(
        `DLORA_ADMIN_TOKEN must be at least 32 characters of A-Z a-z 0-9 . _ ~ + / - ` +
          `(e.g. from \`openssl rand -base64 32\`); got ${fromEnv.length} characters`,
      );
    }
    await store.setAdminTokenHash(await hashToken(fromEnv));
    return { generated: null, source: "env" };
  }
  if ((await store.getAdminTokenHash()) !== null) return { generated: null, source: "stored" };
  const token = newToken();
  await store.setAdminTokenHash(await hashToken(token));
  return { generated: token, source: "generated" };
}
