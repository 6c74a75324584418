import { assert, assertEquals, assertRejects } from "../tests/util.ts";
import { writeHfDirectory } from "./formats/hf.ts";
import { writeGguf } from "./formats/gguf_llama.ts";
import { joinPath, normalizePath, writeFiles } from "./formats/io.ts";
import { assertSameWeights } from "./formats/testing.ts";
import { syntheticWeights } from "./formats/synthetic.ts";
import {
  loadWeights,
  MODEL_REGISTRY,
  resolveModel,
  type ResolveOptions,
  sha256Hex,
} from "./resolve.ts";

const repo = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const sharedStories = normalizePath(joinPath(repo, "..", "shared", "models", "stories260K"));
const noEnv = () => undefined;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dlora-resolve-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("registry checksums match the files in ../shared", async () => {
  for (const f of MODEL_REGISTRY.stories260K.files) {
    const bytes = await Deno.readFile(joinPath(sharedStories, f.name));
    assertEquals(bytes.length, f.size, f.name);
    assertEquals(await sha256Hex(bytes), f.sha256, f.name);
  }
});

Deno.test("a llama2.c path resolves with the tok*.bin beside it; so does its folder", async () => {
  const file = joinPath(sharedStories, "stories260K.bin");
  const r = await resolveModel(file);
  assertEquals([r.format, r.path, r.origin], ["llama2c", file, "path"]);
  assertEquals(r.tokenizer, { kind: "llama2c", path: joinPath(sharedStories, "tok512.bin") });
  const rel = await resolveModel("../shared/models/stories260K/stories260K.bin", { cwd: repo });
  assertEquals(rel.path, file);
  const dir = await resolveModel(sharedStories);
  assertEquals(dir.path, file);
  const w = await loadWeights(r);
  assertEquals(w.config.nLayers, 5);
});

Deno.test("a known name is found under ../shared from any working directory", async () => {
  await withTempDir(async (cwd) => {
    const opts: ResolveOptions = { cwd, env: noEnv, download: false };
    const r = await resolveModel("stories260K", opts);
    assertEquals(r.origin, "search");
    assertEquals(r.format, "llama2c");
    assert(r.path.endsWith("shared/models/stories260K/stories260K.bin"), r.path);
    assertEquals(r.tokenizer?.kind, "llama2c");
    assertEquals((await resolveModel("STORIES260K", opts)).path, r.path);
    assertEquals((await loadWeights("stories260K", opts)).config.dim, 64);
    await assertRejects(
      () => resolveModel("nosuchmodel", opts),
      /model nosuchmodel: not a file, not in .*\/models\/nosuchmodel.*not a known name \(known: stories260K, synthetic:<preset>\)/,
    );
    await assertRejects(
      () => resolveModel("./missing/model.bin", opts),
      /no such file or directory/,
    );
  });
});

Deno.test("$DLORA_HOME comes first; GGUF and HF folders and their tokenizers", async () => {
  await withTempDir(async (home) => {
    const tiny = syntheticWeights("tiny", 1);
    const env = (k: string) => (k === "DLORA_HOME" ? home : undefined);
    const opts: ResolveOptions = { cwd: home, env, download: false };
    await writeFiles(joinPath(home, "models", "tinygguf"), { "tiny.gguf": writeGguf(tiny) });
    const g = await resolveModel("tinygguf", opts);
    assertEquals([g.format, g.origin, g.tokenizer?.kind], ["gguf", "search", "gguf"]);
    assertSameWeights(await loadWeights(g), tiny);

    const hfDir = joinPath(home, "models", "tinyhf");
    await writeFiles(hfDir, writeHfDirectory(tiny));
    const noTok = await resolveModel("tinyhf", opts);
    assertEquals([noTok.format, noTok.tokenizer], ["hf", null]);
    assert(noTok.tokenizerProblem!.includes("pass --tokenizer"));
    await writeFiles(hfDir, { "tokenizer.model": new Uint8Array(1) });
    assert((await resolveModel("tinyhf", opts)).tokenizerProblem!.includes("SentencePiece"));
    await writeFiles(hfDir, { "tok64.bin": new Uint8Array(1) });
    assertEquals((await resolveModel(hfDir, opts)).tokenizer, {
      kind: "llama2c",
      path: joinPath(hfDir, "tok64.bin"),
    });
    await writeFiles(hfDir, { "tokenizer.json": new Uint8Array(1) });
    const hf = await resolveModel(hfDir, opts);
    assertEquals(hf.tokenizer, { kind: "hf-json", path: joinPath(hfDir, "tokenizer.json") });
    assertSameWeights(await loadWeights(hf), tiny);

    // llama2.c tokenizer choice: tokenizer.bin wins; two tok*.bin are ambiguous.
    const l2 = joinPath(home, "l2");
    await writeFiles(l2, {
      "m.bin": new Uint8Array(1),
      "tok1.bin": new Uint8Array(1),
      "tok2.bin": new Uint8Array(1),
    });
    const two = await resolveModel(joinPath(l2, "m.bin"), opts);
    assertEquals(two.tokenizer, null);
    assert(two.tokenizerProblem!.includes("several tokenizers"), two.tokenizerProblem);
    await writeFiles(l2, { "tokenizer.bin": new Uint8Array(1) });
    assertEquals(
      (await resolveModel(joinPath(l2, "m.bin"), opts)).tokenizer?.path,
      joinPath(l2, "tokenizer.bin"),
    );
    await writeFiles(l2, { "n.gguf": new Uint8Array(1) });
    await assertRejects(
      () => resolveModel(l2, opts),
      /several models here \(n\.gguf, m\.bin\); name the file/,
    );
  });
});

Deno.test("synthetic:<preset> resolves without files", async () => {
  const r = await resolveModel("synthetic:tiny");
  assertEquals([r.format, r.origin, r.tokenizer], ["synthetic", "synthetic", null]);
  assertSameWeights(await loadWeights(r, { seed: 3 }), syntheticWeights("tiny", 3));
  await assertRejects(() => loadWeights("synthetic:huge"), /unknown synthetic preset "huge"/);
});

/** Serves /stories260K/<file> from ../shared through `transform`, counting requests. */
function serveShared(transform: (name: string, bytes: Uint8Array) => Uint8Array | number) {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    requests.push(path);
    const m = /^\/stories260K\/([\w.]+)$/.exec(path);
    if (!m) return new Response("not found", { status: 404 });
    const bytes = await Deno.readFile(joinPath(sharedStories, m[1]));
    const out = transform(m[1], bytes);
    return typeof out === "number"
      ? new Response("nope", { status: out })
      : new Response(out as Uint8Array<ArrayBuffer>);
  });
  return { server, requests, url: `http://127.0.0.1:${server.addr.port}` };
}

async function downloadWith(
  transform: (name: string, bytes: Uint8Array) => Uint8Array | number,
  check: (home: string, opts: ResolveOptions, requests: string[]) => Promise<void>,
): Promise<void> {
  const { server, requests, url } = serveShared(transform);
  try {
    await withTempDir(async (home) => {
      const env = (k: string) =>
        ({ DLORA_HOME: home, DLORA_MODEL_URL: url } as Record<string, string>)[k];
      await check(home, { cwd: home, env, searchRoots: [home] }, requests);
    });
  } finally {
    await server.shutdown();
  }
}

Deno.test("download: checksum-verified into $DLORA_HOME, then found locally", async () => {
  await downloadWith((_, b) => b, async (home, opts, requests) => {
    const r = await resolveModel("stories260K", opts);
    const dir = joinPath(home, "models", "stories260K");
    assertEquals([r.origin, r.format, r.path], [
      "download",
      "llama2c",
      joinPath(dir, "stories260K.bin"),
    ]);
    assertEquals(r.tokenizer?.path, joinPath(dir, "tok512.bin"));
    assertEquals(requests, [
      "/stories260K/stories260K.bin",
      "/stories260K/tok512.bin",
      "/stories260K/oracle.json",
    ]);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assertEquals(names.sort(), ["oracle.json", "stories260K.bin", "tok512.bin"]);
    assertEquals((await loadWeights(r)).config.vocabSize, 512);
    const again = await resolveModel("stories260K", opts);
    assertEquals([again.origin, requests.length], ["search", 3]);
  });
});

Deno.test("download: a corrupted file is discarded with a clear error", async () => {
  const corrupt = (name: string, b: Uint8Array) => {
    if (name !== "stories260K.bin") return b;
    const c = b.slice();
    c[1000] ^= 1;
    return c;
  };
  await downloadWith(corrupt, async (home, opts) => {
    await assertRejects(
      () => resolveModel("stories260K", opts),
      /^stories260K\.bin: sha256 mismatch: expected b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696, got [0-9a-f]{64}; the download was discarded$/,
    );
    const left = [];
    for await (const e of Deno.readDir(joinPath(home, "models", "stories260K"))) left.push(e.name);
    assertEquals(left, []);
  });
  await downloadWith(
    (name, b) => (name === "tok512.bin" ? b.slice(0, 100) : b),
    async (home, opts) => {
      await assertRejects(
        () => resolveModel("stories260K", opts),
        /tok512\.bin: size mismatch: expected 6227 bytes, got 100; the download was discarded/,
      );
      const left = [];
      for await (const e of Deno.readDir(joinPath(home, "models", "stories260K"))) {
        left.push(
          e.name,
        );
      }
      assertEquals(left, ["stories260K.bin"]); // verified files stay; the bad one is gone
    },
  );
  await downloadWith((name, b) => (name === "stories260K.bin" ? 503 : b), async (_, opts) => {
    await assertRejects(
      () => resolveModel("stories260K", opts),
      /stories260K\.bin: download from http:\/\/127\.0\.0\.1:\d+\/stories260K\/stories260K\.bin failed: HTTP 503/,
    );
  });
  await downloadWith((name, b) => (name === "oracle.json" ? 404 : b), async (_, opts) => {
    const r = await resolveModel("stories260K", opts);
    assertEquals(r.origin, "download"); // a missing optional file is skipped
  });
  await downloadWith((_, b) => b, async (_, opts) => {
    await assertRejects(
      () => resolveModel("stories260K", { ...opts, download: false }),
      /downloads are off/,
    );
  });
});
