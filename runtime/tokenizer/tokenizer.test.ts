import { assertEquals } from "../../tests/util.ts";
import {
  byteLevelTable,
  compilePattern,
  fromByteLevel,
  GPT2_PATTERN,
  LLAMA3_PATTERN,
  splitIsolated,
  toByteLevel,
} from "./pretokenize.ts";
import { parseByteToken, SpecialSplitter, utf8Encode } from "./tokenizer.ts";

Deno.test("special splitter: longest match first, control tokens only on request", () => {
  const s = new SpecialSplitter([["<tool>", 10]], [["<s>", 1], ["<s><s>", 7]]);
  assertEquals(s.split("a<s>b<tool>", false), [{ text: "a<s>b" }, { id: 10 }]);
  assertEquals(s.split("<s><s>x<s>", true), [{ id: 7 }, { text: "x" }, { id: 1 }]);
  assertEquals(s.split("", true), []);
});

Deno.test("byte tokens and the GPT-2 byte table", () => {
  assertEquals([parseByteToken("<0x0A>"), parseByteToken("<0xff>"), parseByteToken("<0xG0>")], [
    10,
    255,
    -1,
  ]);
  const { byteToChar, charToByte } = byteLevelTable();
  assertEquals([byteToChar[0x20], byteToChar[0x0a], byteToChar[0x41]], ["Ġ", "Ċ", "A"]);
  assertEquals(charToByte.size, 256);
  const text = "héllo 🦙\n";
  assertEquals(fromByteLevel(toByteLevel(utf8Encode(text))), utf8Encode(text));
});

Deno.test("pre-tokenizer patterns cut words as GPT-2 and Llama 3 do", () => {
  const gpt2 = compilePattern(GPT2_PATTERN);
  assertEquals(splitIsolated("I'll   go 123!!\n", gpt2), [
    "I",
    "'ll",
    "  ",
    " go",
    " 123",
    "!!",
    "\n",
  ]);
  const llama3 = compilePattern(LLAMA3_PATTERN);
  assertEquals(splitIsolated("I'LL go 12345", llama3), ["I", "'LL", " go", " ", "123", "45"]);
});
