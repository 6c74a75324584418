import { assert, assertEquals, assertThrows } from "../../tests/util.ts";
import { parseGguf } from "../formats/gguf.ts";
import { tokenizerFromGgufVocab, vocabFromGgufMetadata } from "./gguf_vocab.ts";
import { GGUF_FIXTURES, ggufVectors, randomText, same } from "./test_util.ts";
import { type Tokenizer, TokenStreamDecoder } from "./tokenizer.ts";

const loaded = new Map<string, Tokenizer>();
function fixture(name: string): Tokenizer {
  let t = loaded.get(name);
  if (!t) {
    const file = parseGguf(Deno.readFileSync(new URL(`ggml-vocab-${name}.gguf`, GGUF_FIXTURES)));
    t = tokenizerFromGgufVocab(vocabFromGgufMetadata(file.metadata));
    loaded.set(name, t);
  }
  return t;
}

/** Every vector of a fixture; mismatches are listed with their input. */
function checkVectors(name: string): void {
  const tok = fixture(name);
  const vectors = ggufVectors(name);
  assertEquals(vectors.length, 46, `${name}: vector count`);
  const bad: string[] = [];
  for (const { text, ids } of vectors) {
    // llama.cpp's test-tokenizer-0 tokenizes with add_special = false, parse_special = false.
    const got = tok.encode(text, { bos: false, eos: false });
    if (!same(got, ids)) {
      bad.push(`${JSON.stringify(text)}\n  want ${ids.join(" ")}\n  got  ${got.join(" ")}`);
    }
  }
  assert(
    bad.length === 0,
    `${name}: ${bad.length}/${vectors.length} vectors differ:\n${bad.join("\n")}`,
  );
}

Deno.test("gguf llama-spm: all llama.cpp vectors", () => checkVectors("llama-spm"));
Deno.test("gguf gpt-2: all llama.cpp vectors", () => checkVectors("gpt-2"));
Deno.test("gguf bert-bge: all llama.cpp vectors", () => checkVectors("bert-bge"));

Deno.test("gguf: metadata maps to the vocabulary and its special ids", () => {
  const spm = fixture("llama-spm");
  assertEquals([spm.kind, spm.vocabSize, spm.bosId, spm.eosId], ["spm", 32000, 1, 2]);
  assertEquals(spm.encode("Hello world"), [1, 15043, 3186]); // add_bos_token = true
  const gpt2 = fixture("gpt-2");
  assertEquals([gpt2.kind, gpt2.vocabSize, gpt2.bosId, gpt2.eosId], ["bpe", 50257, 50256, 50256]);
  assertEquals(gpt2.encode("Hello world"), [15496, 995]); // GPT-2 adds nothing by default
  const bert = fixture("bert-bge");
  assertEquals([bert.kind, bert.vocabSize, bert.bosId, bert.eosId], ["wordpiece", 30522, 101, 102]);
  assertEquals(bert.encode("Hello world"), [101, 7592, 2088, 102]); // [CLS] … [SEP]
  assertEquals(spm.tokenText(15043), "▁Hello");
  assertEquals(gpt2.tokenText(995), "Ġworld");
});

Deno.test("gguf: control tokens in text stay text unless parseSpecial", () => {
  const spm = fixture("llama-spm");
  const plain = spm.encode("<s>hi", { bos: false });
  assert(!plain.includes(1), `"<s>" became BOS: ${plain}`);
  assertEquals(spm.decode(plain), "<s>hi");
  // After a special token llama.cpp adds the space prefix again.
  assertEquals(spm.encode("<s>hi", { bos: false, parseSpecial: true }), [
    1,
    ...spm.encode("hi", { bos: false }),
  ]);
  const gpt2 = fixture("gpt-2");
  assertEquals(gpt2.encode("a<|endoftext|>", { parseSpecial: true }).slice(-1), [50256]);
  assert(!gpt2.encode("a<|endoftext|>").includes(50256));
});

Deno.test("gguf: SPM and GPT-2 round-trip fixture inputs and random unicode", () => {
  const texts = ggufVectors("gpt-2").map((v) => v.text);
  for (let seed = 1; seed <= 30; seed++) texts.push(randomText(seed, 40));
  for (const name of ["llama-spm", "gpt-2"]) {
    const tok = fixture(name);
    for (const text of texts) {
      const ids = tok.encode(text);
      assertEquals(tok.decode(ids), text, `${name} ${JSON.stringify(text)}`);
      const stream = new TokenStreamDecoder(tok);
      let streamed = "";
      for (const id of ids) streamed += stream.push(id);
      assertEquals(streamed + stream.flush(), text, `${name} streamed ${JSON.stringify(text)}`);
    }
  }
});

Deno.test("gguf bert-bge: decode gives the normalized words", () => {
  const bert = fixture("bert-bge");
  assertEquals(
    bert.decode(bert.encode("Hello, World! Führer discards")),
    "hello , world ! fuhrer discards",
  );
  assertEquals(bert.decode(bert.encode("this is 🦙.cpp")), "this is [UNK] . cpp");
  const ids = bert.encode("Cửa Việt");
  const stream = new TokenStreamDecoder(bert);
  assertEquals(ids.map((id) => stream.push(id)).join(""), "cua viet");
});

Deno.test("gguf: missing or unsupported tokenizer metadata is named", () => {
  assertThrows(() => vocabFromGgufMetadata(new Map()), /no tokenizer\.ggml\.model/);
  assertThrows(
    () => vocabFromGgufMetadata(new Map([["tokenizer.ggml.model", "t5"]])),
    /"t5" is not supported/,
  );
  assertThrows(
    () => vocabFromGgufMetadata(new Map([["tokenizer.ggml.model", "llama"]])),
    /no tokenizer\.ggml\.tokens/,
  );
  assertThrows(
    () =>
      vocabFromGgufMetadata(
        new Map<string, unknown>([["tokenizer.ggml.model", "llama"], ["tokenizer.ggml.tokens", [
          1,
          2,
        ]]]),
      ),
    /tokenizer\.ggml\.tokens: expected strings/,
  );
  assertThrows(
    () =>
      tokenizerFromGgufVocab({
        model: "gpt2",
        tokens: ["a"],
        merges: [],
        pre: "deepseek-coder",
      }),
    /"deepseek-coder" is not supported/,
  );
});
