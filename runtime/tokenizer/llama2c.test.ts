import { assert, assertEquals, assertThrows } from "../../tests/util.ts";
import { FormatError } from "../formats/errors.ts";
import { Llama2cTokenizer, loadLlama2cTokenizer } from "./llama2c.ts";
import {
  ORACLE,
  oracleCases,
  randomText,
  same,
  SHAKESPEARE,
  shakespeareParagraphs,
  TOK512,
} from "./test_util.ts";
import { TokenStreamDecoder } from "./tokenizer.ts";

const tok = loadLlama2cTokenizer(Deno.readFileSync(TOK512), 512);

/** run.c encode() line by line: string concatenation, linear scan for the best pair, O(n²). */
function runcEncode(t: Llama2cTokenizer, text: string, bos: boolean, eos: boolean): number[] {
  const sorted = new Map(t.pieces.map((p, i) => [p, i])); // run.c: bsearch over sorted pieces
  const lookup = (s: string) => sorted.get(s) ?? -1;
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (text !== "") tokens.push(lookup(" "));
  for (const ch of text) {
    const id = lookup(ch);
    if (id !== -1) tokens.push(id);
    else for (const b of new TextEncoder().encode(ch)) tokens.push(b + 3);
  }
  for (;;) {
    let bestScore = -1e10, bestId = -1, bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup(t.pieces[tokens[i]] + t.pieces[tokens[i + 1]]);
      if (id !== -1 && t.scores[id] > bestScore) {
        bestScore = t.scores[id];
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}

Deno.test("llama2c: tok512.bin reads as 512 distinct pieces with run.c's fixed ids", () => {
  assertEquals(tok.vocabSize, 512);
  assertEquals(tok.maxTokenLength, 7);
  assertEquals([tok.tokenText(0), tok.tokenText(1), tok.tokenText(2)], [
    "<unk>",
    "\n<s>\n",
    "\n</s>\n",
  ]);
  assertEquals(tok.tokenText(3 + 0x0a), "<0x0A>");
  assertEquals(new Set(tok.pieces).size, 512, "duplicate pieces would make lookups ambiguous");
  // Without the vocabulary size the file is read to its end.
  assertEquals(loadLlama2cTokenizer(Deno.readFileSync(TOK512)).vocabSize, 512);
});

Deno.test("llama2c: encode matches every oracle case (ids and pieces)", () => {
  for (const c of oracleCases()) {
    const ids = tok.encode(c.text);
    assertEquals(ids, c.ids, JSON.stringify(c.text));
    assertEquals(ids.map((id) => tok.tokenText(id)), c.pieces, JSON.stringify(c.text));
  }
});

Deno.test("llama2c: heap merge equals run.c's O(n²) loop on random and real text", () => {
  const texts = [
    ...oracleCases().map((c) => c.text),
    ...shakespeareParagraphs(8),
    "",
    " ",
    "\n",
    "   leading and trailing   ",
    "aaaaaaaaaaaaaaaaaaaaaaaaaa",
  ];
  for (let seed = 1; seed <= 40; seed++) texts.push(randomText(seed, 1 + (seed * 7) % 60));
  for (const text of texts) {
    for (const [bos, eos] of [[true, false], [false, true]]) {
      const want = runcEncode(tok, text, bos, eos);
      const got = tok.encode(text, { bos, eos });
      assert(same(got, want), `${JSON.stringify(text)}: got ${got}, run.c ${want}`);
    }
  }
});

Deno.test("llama2c: decode round-trips text, with and without BOS", () => {
  const texts = [
    ...oracleCases().map((c) => c.text),
    ...shakespeareParagraphs(4),
    "",
    " x",
    "\n\n",
  ];
  for (let seed = 100; seed < 140; seed++) texts.push(randomText(seed, 50));
  for (const text of texts) {
    assertEquals(tok.decode(tok.encode(text)), text, JSON.stringify(text));
    assertEquals(tok.decode(tok.encode(text, { bos: false, eos: true })), text);
  }
});

Deno.test("llama2c: streaming decode drops the space after BOS and assembles byte tokens", () => {
  const oracle = JSON.parse(Deno.readTextFileSync(ORACLE));
  const ids: number[] = oracle.greedy_60_from_bos_ids;
  const stream = new TokenStreamDecoder(tok);
  let text = "";
  for (const id of ids) text += stream.push(id);
  text += stream.flush();
  assertEquals(text, oracle.greedy_60_from_bos_text.slice(1)); // the oracle keeps the raw " Once"
  assertEquals(tok.decode(ids), text);

  // "🙂" is four byte tokens: nothing shows until the fourth.
  const emoji = tok.encode("🙂");
  assertEquals(emoji.slice(-4).map((id) => tok.tokenText(id)), [
    "<0xF0>",
    "<0x9F>",
    "<0x99>",
    "<0x82>",
  ]);
  const s = new TokenStreamDecoder(tok);
  const shown = emoji.map((id) => s.push(id));
  assertEquals(shown.slice(-4), ["", "", "", "🙂"]);
  assertEquals(tok.decodeToken(1, tok.lookup(" Once")), new TextEncoder().encode("Once"));
  assertEquals(tok.decodeToken(5, tok.lookup(" Once")), new TextEncoder().encode(" Once"));
});

Deno.test("llama2c: loader errors say what is wrong", () => {
  const bytes = Deno.readFileSync(TOK512);
  const e = assertThrows(
    () => loadLlama2cTokenizer(bytes.subarray(0, 1000), 512, "tok512.bin"),
    /tok512\.bin: ends at byte/,
  );
  assert(e instanceof FormatError);
  assertThrows(() => loadLlama2cTokenizer(bytes, 513), /vocabulary size right/);
  assertThrows(() => loadLlama2cTokenizer(new Uint8Array(2)), /too short/);
  assertThrows(() => tok.decodeToken(0, 512), /outside the vocabulary/);
});

Deno.test("llama2c: tinyshakespeare (1.1 MB) encodes in one pass and decodes back", () => {
  const text = Deno.readTextFileSync(SHAKESPEARE);
  const t0 = performance.now();
  const ids = tok.encode(text);
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    `tinyshakespeare: ${text.length} chars → ${ids.length} tokens in ${seconds.toFixed(2)} s ` +
      `(${(text.length / 1e6 / seconds).toFixed(2)} MB/s)`,
  );
  assertEquals(ids[0], 1);
  assertEquals(tok.decode(ids), text);
});
