/** Shared test data for the tokenizer tests (paths into ../shared, random text). */
import { rng } from "../../tests/util.ts";

export const SHARED = new URL("../../../shared/", import.meta.url);
export const TOK512 = new URL("models/stories260K/tok512.bin", SHARED);
export const ORACLE = new URL("models/stories260K/oracle.json", SHARED);
export const SHAKESPEARE = new URL("datasets/tinyshakespeare.txt", SHARED);
export const GGUF_FIXTURES = new URL("fixtures/gguf/", SHARED);

export interface OracleCase {
  text: string;
  ids: number[];
  pieces: string[];
}

export function oracleCases(): OracleCase[] {
  return JSON.parse(Deno.readTextFileSync(ORACLE)).cases;
}

/** llama.cpp's vocab test vectors: inputs split on "\n__ggml_vocab_test__\n", one id line each. */
export function ggufVectors(name: string): { text: string; ids: number[] }[] {
  const inp = Deno.readTextFileSync(new URL(`ggml-vocab-${name}.gguf.inp`, GGUF_FIXTURES));
  const out = Deno.readTextFileSync(new URL(`ggml-vocab-${name}.gguf.out`, GGUF_FIXTURES));
  const texts = inp.split("\n__ggml_vocab_test__\n");
  if (texts[texts.length - 1] === "") texts.pop();
  const lines = out.split("\n");
  if (lines.length < texts.length) {
    throw new Error(`${name}: ${texts.length} inputs but ${lines.length} output lines`);
  }
  return texts.map((text, i) => ({
    text,
    ids: lines[i].trim() === "" ? [] : lines[i].trim().split(/\s+/).map(Number),
  }));
}

/** The first `n` paragraphs (blank-line separated) of tinyshakespeare. */
export function shakespeareParagraphs(n: number): string[] {
  return Deno.readTextFileSync(SHAKESPEARE).split("\n\n").slice(0, n);
}

const ALPHABET = [
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-",
  " ",
  " ",
  " ",
  "  ",
  "\n",
  "\n\n",
  "\t",
  "\r\n",
  "é",
  "ü",
  "ñ",
  "ß",
  "e\u0301", // combining acute
  "我",
  "想",
  "工作",
  "日本語",
  "нещо",
  "Ελλάδα",
  "🙂",
  "🦙",
  "😶\u200d🌫️",
  "👍🏽",
  "\u00a0", // no-break space
  "½",
  "€",
  "~",
  "<s>",
];

/** Random text from a mix of ASCII, whitespace runs, accents, CJK, Cyrillic, Greek and emoji. */
export function randomText(seed: number, length: number): string {
  const r = rng(seed);
  let s = "";
  for (let i = 0; i < length; i++) s += ALPHABET[Math.floor(r() * ALPHABET.length)];
  return s;
}

export function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
