import { loadGgufLlama } from "../formats/gguf_llama.ts";
import { loadHfDirectory } from "../formats/hf.ts";
import { denoDirectory } from "../formats/io.ts";
import { loadModel, loadTokenizer } from "../load.ts";
import { assert, assertClose, assertEquals } from "../../tests/util.ts";
import { runCli } from "./testing.ts";

const oracle = JSON.parse(
  await Deno.readTextFile(
    new URL("../../../shared/models/stories260K/oracle.json", import.meta.url),
  ),
) as { cases: { text: string; ids: number[] }[] };

Deno.test("convert stories260K to HF and GGUF: same weights, same tokenizer ids", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const src = await loadModel("stories260K");
    const hf = await runCli([
      "convert",
      "--model",
      "stories260K",
      "--to",
      "hf",
      "--out",
      `${dir}/hf`,
      "--json",
    ]);
    assertEquals(hf.code, 0, hf.stderr);
    assertEquals(hf.json?.out, `${dir}/hf`);
    const gg = await runCli([
      "convert",
      "--model",
      "stories260K",
      "--to",
      "gguf",
      "--out",
      `${dir}/m.gguf`,
      "--json",
    ]);
    assertEquals(gg.code, 0, gg.stderr);

    const fromHf = await loadHfDirectory(denoDirectory(`${dir}/hf`));
    const fromGguf = loadGgufLlama(await Deno.readFile(`${dir}/m.gguf`));
    for (const w of [fromHf, fromGguf]) {
      assertEquals(w.config.dim, src.weights.config.dim);
      assertClose(w.tokenEmbedding, src.weights.tokenEmbedding, { atol: 0, rtol: 0 });
      for (let l = 0; l < w.layers.length; l++) {
        assertClose(w.layers[l].wq, src.weights.layers[l].wq, { atol: 0, rtol: 0 });
        assertClose(w.layers[l].wk, src.weights.layers[l].wk, { atol: 0, rtol: 0 });
        assertClose(w.layers[l].down, src.weights.layers[l].down, { atol: 0, rtol: 0 });
      }
    }
    // The tokenizers written beside/inside the converted models encode like the original.
    const toks = [
      await loadTokenizer({ kind: "hf-json", path: `${dir}/hf/tokenizer.json` }),
      await loadTokenizer({ kind: "gguf", path: `${dir}/m.gguf` }),
    ];
    for (const tok of toks) {
      for (const c of oracle.cases) {
        assertEquals(tok.encode(c.text, { bos: true }), c.ids, `${tok.kind}: ${c.text}`);
      }
    }
    // And the resolver finds them as models with their tokenizers.
    const again = await loadModel(`${dir}/m.gguf`);
    assert(again.tokenizer !== null, "GGUF carries its tokenizer");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("convert: usage errors exit 2 with a message, unknown models exit 1", async () => {
  const bad = await runCli(["convert", "--model", "stories260K", "--to", "onnx", "--out", "x"]);
  assertEquals(bad.code, 2);
  assert(/--to must be hf or gguf/.test(bad.stderr), bad.stderr);
  const unknownFlag = await runCli(["convert", "--modle", "x"]);
  assertEquals(unknownFlag.code, 2);
  assert(/unknown flag --modle/.test(unknownFlag.stderr), unknownFlag.stderr);
  const missing = await runCli(["convert", "--model", "no-such-model", "--to", "hf", "--out", "x"]);
  assertEquals(missing.code, 1);
  assert(/not a known name/.test(missing.stderr), missing.stderr);
});
