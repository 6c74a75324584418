/**
 * `dlora convert --model M --to hf|gguf --out PATH [--dtype f32|f16|bf16|q8_0]`:
 * any supported model → a Hugging Face directory (config.json, model.safetensors,
 * tokenizer.json) or a single GGUF file with its tokenizer embedded.
 */
import { parseGguf } from "../../formats/gguf.ts";
import { writeGguf } from "../../formats/gguf_llama.ts";
import { writeHfDirectory } from "../../formats/hf.ts";
import { dirName, writeFiles } from "../../formats/io.ts";
import { llama2cToGgufTokenizer, loadModel } from "../../load.ts";
import { llama2cToHfTokenizerJson, Llama2cTokenizer } from "../../tokenizer/mod.ts";
import { type Flags, requireString, UsageError } from "../args.ts";

export const convertFlags = {
  model: "string",
  to: "string",
  out: "string",
  dtype: "string",
  tokenizer: "string",
} as const;

export async function convert(flags: Flags): Promise<Record<string, unknown>> {
  const modelArg = requireString(flags, "model", "convert");
  const to = requireString(flags, "to", "convert");
  const out = requireString(flags, "out", "convert");
  if (to !== "hf" && to !== "gguf") {
    throw new UsageError(`convert: --to must be hf or gguf, got "${to}"`);
  }
  const dtype = String(flags.dtype ?? "f32").toUpperCase();
  const allowed = to === "hf" ? ["F32", "F16", "BF16"] : ["F32", "F16", "BF16", "Q8_0"];
  if (!allowed.includes(dtype)) {
    throw new UsageError(
      `convert: --dtype for ${to} must be one of ${allowed.join(", ").toLowerCase()}`,
    );
  }
  const m = await loadModel(modelArg, { tokenizer: flags.tokenizer as string | undefined });
  const notes: string[] = [];
  if (to === "hf") {
    const files = writeHfDirectory(m.weights, { dtype: dtype as "F32" | "F16" | "BF16" });
    if (m.tokenizer instanceof Llama2cTokenizer) {
      files["tokenizer.json"] = new TextEncoder().encode(
        JSON.stringify(llama2cToHfTokenizerJson(m.tokenizer)),
      );
      // Keep the original too: it is the exact reference for llama2.c-trained models.
      if (m.tokenizerPath) files["tokenizer.bin"] = await Deno.readFile(m.tokenizerPath);
    } else if (m.tokenizerPath?.endsWith(".json")) {
      files["tokenizer.json"] = await Deno.readFile(m.tokenizerPath);
    } else if (m.tokenizer) {
      notes.push("the model's tokenizer has no tokenizer.json form here; pass --tokenizer later");
    }
    await writeFiles(out, files);
    return { out, format: "hf", files: Object.keys(files).sort(), dtype, notes };
  }
  let tokenizerMeta = {};
  if (m.tokenizer instanceof Llama2cTokenizer) {
    tokenizerMeta = { tokenizer: llama2cToGgufTokenizer(m.tokenizer) };
  } else if (m.tokenizerPath?.endsWith(".gguf")) {
    const src = parseGguf(await Deno.readFile(m.tokenizerPath), m.tokenizerPath);
    const keys = [...src.metadata.keys()].filter((k) => k.startsWith("tokenizer."));
    tokenizerMeta = {
      extraMetadata: new Map(keys.map((k) => [k, src.metadata.get(k)!])),
      extraTypes: new Map(keys.map((k) => [k, src.metadataTypes.get(k)!])),
    };
  } else if (m.tokenizer) {
    notes.push(
      "tokenizer.json vocabularies are not embedded in GGUF yet; the file has no tokenizer",
    );
  }
  const bytes = writeGguf(m.weights, {
    type: dtype as "F32" | "F16" | "BF16" | "Q8_0",
    modelName: modelArg,
    ...tokenizerMeta,
  });
  if (dirName(out) !== "") await Deno.mkdir(dirName(out), { recursive: true });
  const tmp = `${out}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, out);
  return { out, format: "gguf", bytes: bytes.length, dtype, notes };
}
