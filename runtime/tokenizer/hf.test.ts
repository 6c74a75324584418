import { assert, assertEquals, assertThrows } from "../../tests/util.ts";
import { parseGguf } from "../formats/gguf.ts";
import { vocabFromGgufMetadata } from "./gguf_vocab.ts";
import { type HfTokenizerJson, llama2cToHfTokenizerJson, loadHfTokenizerJson } from "./hf.ts";
import { loadLlama2cTokenizer } from "./llama2c.ts";
import {
  GGUF_FIXTURES,
  ggufVectors,
  oracleCases,
  randomText,
  same,
  SHAKESPEARE,
  shakespeareParagraphs,
  TOK512,
} from "./test_util.ts";

const llama2c = loadLlama2cTokenizer(Deno.readFileSync(TOK512), 512);
const converted = llama2cToHfTokenizerJson(llama2c);

function texts(): string[] {
  const out = [...oracleCases().map((c) => c.text), ...shakespeareParagraphs(30), "", " ", "a  b"];
  for (let seed = 1; seed <= 30; seed++) out.push(randomText(seed, 60));
  return out;
}

/** The converted file with its normalizer swapped for a Metaspace pre-tokenizer (newer Llama files). */
function metaspaceVariant(split: boolean): HfTokenizerJson {
  return {
    ...converted,
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split },
    decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split },
  };
}

Deno.test("hf: llama2.c → tokenizer.json lists SentencePiece merges best score first", () => {
  const merges = converted.model.merges as string[];
  const vocab = converted.model.vocab;
  assertEquals(merges.slice(0, 3), ["▁ t", "h e", "▁ a"]);
  const score = (m: string) => {
    const [l, r] = m.split(" ");
    return llama2c.scores[vocab[l + r]];
  };
  for (let i = 1; i < merges.length; i++) {
    assert(score(merges[i - 1]) >= score(merges[i]), merges[i]);
  }
  assertEquals([vocab["<unk>"], vocab["<s>"], vocab["</s>"], vocab["<0x0A>"], vocab["▁Once"]], [
    0,
    1,
    2,
    13,
    403,
  ]);
});

Deno.test("hf: converted tokenizer.json encodes exactly like llama2.c", () => {
  const hf = loadHfTokenizerJson(JSON.stringify(converted));
  assertEquals([hf.bosId, hf.eosId, hf.vocabSize], [1, 2, 512]);
  for (const c of oracleCases()) assertEquals(hf.encode(c.text), c.ids, JSON.stringify(c.text));
  for (const text of texts()) {
    const want = llama2c.encode(text, { bos: false });
    const got = hf.encode(text, { bos: false });
    assert(same(got, want), `${JSON.stringify(text)}: hf ${got} llama2c ${want}`);
    assertEquals(hf.decode(hf.encode(text)), text, JSON.stringify(text));
  }
  // The first 100 KB of tinyshakespeare as one sequence.
  const book = Deno.readTextFileSync(SHAKESPEARE).slice(0, 100_000);
  assert(same(hf.encode(book), llama2c.encode(book)), "tinyshakespeare head differs");
});

Deno.test("hf: Metaspace-style files (split or not) agree with llama2.c", () => {
  for (const split of [false, true]) {
    const hf = loadHfTokenizerJson(metaspaceVariant(split));
    // Metaspace does not prepend ▁ to text that already starts with a space (HF behaviour), so
    // there " x" encodes as "▁x", unlike llama2.c and the legacy Prepend normalizer.
    assertEquals(hf.encode(" x", { bos: false }), hf.encode("x", { bos: false }));
    for (const text of texts().filter((t) => !t.startsWith(" "))) {
      const got = hf.encode(text, { bos: false });
      const want = llama2c.encode(text, { bos: false });
      assert(same(got, want), `split=${split} ${JSON.stringify(text)}: hf ${got} llama2c ${want}`);
      assertEquals(hf.decode(got), text);
    }
  }
});

Deno.test("hf: GPT-2 ByteLevel tokenizer.json passes llama.cpp's gpt-2 vectors", () => {
  const gguf = parseGguf(Deno.readFileSync(new URL("ggml-vocab-gpt-2.gguf", GGUF_FIXTURES)));
  const v = vocabFromGgufMetadata(gguf.metadata);
  const vocab: Record<string, number> = {};
  v.tokens.forEach((t, i) => (vocab[t] = i));
  const hf = loadHfTokenizerJson({
    added_tokens: [{ id: 50256, content: "<|endoftext|>", special: true }],
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: {
      type: "ByteLevel",
      add_prefix_space: true,
      trim_offsets: false,
      use_regex: true,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    // The newer [left, right] form of merges.
    model: { type: "BPE", vocab, merges: v.merges!.map((m) => m.split(" ") as [string, string]) },
  });
  assertEquals([hf.bosId, hf.eosId], [-1, 50256]);
  for (const { text, ids } of ggufVectors("gpt-2")) {
    const got = hf.encode(text);
    assert(same(got, ids), `${JSON.stringify(text)}: want ${ids} got ${got}`);
    assertEquals(hf.decode(got), text);
  }
});

Deno.test("hf: unsupported parts of tokenizer.json are named", () => {
  const base = llama2cToHfTokenizerJson(llama2c);
  assertThrows(
    () => loadHfTokenizerJson({ ...base, model: { ...base.model, type: "Unigram" } }),
    /model type "Unigram" is not supported/,
  );
  assertThrows(
    () => loadHfTokenizerJson({ ...base, pre_tokenizer: { type: "UnicodeScripts" } }),
    /pre_tokenizer type "UnicodeScripts"/,
  );
  assertThrows(
    () => loadHfTokenizerJson(base, { bosToken: "<bos>" }),
    /BOS token "<bos>" not found/,
  );
});
