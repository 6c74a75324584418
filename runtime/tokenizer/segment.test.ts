import { assert } from "../../tests/util.ts";
import { parseGguf } from "../formats/gguf.ts";
import { vocabFromGgufMetadata } from "./gguf_vocab.ts";
import { loadLlama2cTokenizer } from "./llama2c.ts";
import { mergeGreedy, PairTable } from "./merge.ts";
import { SegmentedMerger } from "./segment.ts";
import { GGUF_FIXTURES, randomText, same, SHAKESPEARE, TOK512 } from "./test_util.ts";
import { tokenIndex } from "./vocab.ts";

/** One symbol per code point (unknown ones as -(cp + 3)), as the SPM tokenizer starts. */
function symbols(text: string, ids: Map<string, number>): Int32Array {
  return Int32Array.from([...text].map((ch) => ids.get(ch) ?? -(ch.codePointAt(0)! + 3)));
}

function check(
  name: string,
  texts: string[],
  merger: SegmentedMerger,
  table: PairTable,
  ids: Map<string, number>,
  min = -Infinity,
) {
  for (const text of texts) {
    const a = symbols(text, ids), b = a.slice();
    const whole = a.subarray(0, mergeGreedy(a, a.length, table, min));
    const seg = b.subarray(0, merger.merge(b, b.length));
    assert(
      same(seg, whole),
      `${name}: segmented merge differs on ${JSON.stringify(text.slice(0, 80))}`,
    );
  }
}

function pairTable(
  tokens: string[],
  ids: Map<string, number>,
  score: (i: number) => number,
): PairTable {
  const table = new PairTable();
  tokens.forEach((t, i) => {
    if (ids.get(t) !== i) return;
    for (let k = 1; k < t.length; k++) {
      const a = ids.get(t.slice(0, k)), b = ids.get(t.slice(k));
      if (a !== undefined && b !== undefined) table.add(a, b, i, score(i));
    }
  });
  return table;
}

const book = Deno.readTextFileSync(SHAKESPEARE).slice(0, 200_000);
const texts = [book, book.replaceAll(" ", "  "), "", "x"];
for (let seed = 1; seed <= 20; seed++) texts.push(randomText(seed, 200));

Deno.test("segment: cutting where no token spans gives the same merges (llama2.c vocab)", () => {
  const tok = loadLlama2cTokenizer(Deno.readFileSync(TOK512), 512);
  const ids = tokenIndex(tok.pieces);
  const table = pairTable(tok.pieces, ids, (i) => tok.scores[i]);
  check("tok512", texts, new SegmentedMerger(tok.pieces, ids, table, -1e10), table, ids, -1e10);
});

Deno.test("segment: same merges on a 32000-token SentencePiece vocab", () => {
  const file = parseGguf(Deno.readFileSync(new URL("ggml-vocab-llama-spm.gguf", GGUF_FIXTURES)));
  const v = vocabFromGgufMetadata(file.metadata);
  const ids = tokenIndex(v.tokens);
  const table = pairTable(v.tokens, ids, (i) => v.scores![i]);
  const escaped = texts.map((t) => " " + t.replaceAll(" ", "\u2581"));
  check("llama-spm", escaped, new SegmentedMerger(v.tokens, ids, table), table, ids);
});
