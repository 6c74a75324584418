/**
 * From GGUF metadata (`tokenizer.ggml.*`) to a `GgufVocab`, and from a `GgufVocab` to the
 * tokenizer its `tokenizer.ggml.model` names.
 */
import { BytePairTokenizer } from "./bpe.ts";
import { SpmTokenizer } from "./spm.ts";
import type { Tokenizer } from "./tokenizer.ts";
import type { GgufVocab } from "./vocab.ts";
import { WordPieceTokenizer } from "./wordpiece.ts";

function get(md: ReadonlyMap<string, unknown>, key: string): unknown {
  return md.get(key);
}

function num(md: ReadonlyMap<string, unknown>, key: string): number | undefined {
  const v = get(md, key);
  if (v === undefined) return undefined;
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  throw new TypeError(`GGUF ${key}: expected a number, found ${typeof v}`);
}

function bool(md: ReadonlyMap<string, unknown>, key: string): boolean | undefined {
  const v = get(md, key);
  if (v === undefined) return undefined;
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return v !== 0;
  throw new TypeError(`GGUF ${key}: expected a bool, found ${typeof v}`);
}

function str(md: ReadonlyMap<string, unknown>, key: string): string | undefined {
  const v = get(md, key);
  if (v === undefined) return undefined;
  if (typeof v === "string") return v;
  throw new TypeError(`GGUF ${key}: expected a string, found ${typeof v}`);
}

function list(md: ReadonlyMap<string, unknown>, key: string): unknown[] | undefined {
  const v = get(md, key);
  if (v === undefined) return undefined;
  if (Array.isArray(v)) return v;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    return Array.from(v as unknown as ArrayLike<number | bigint>);
  }
  throw new TypeError(`GGUF ${key}: expected an array`);
}

function strings(md: ReadonlyMap<string, unknown>, key: string): string[] | undefined {
  const v = list(md, key);
  if (v === undefined) return undefined;
  if (v.some((s) => typeof s !== "string")) throw new TypeError(`GGUF ${key}: expected strings`);
  return v as string[];
}

function numbers(md: ReadonlyMap<string, unknown>, key: string): number[] | undefined {
  const v = list(md, key);
  if (v === undefined) return undefined;
  return v.map((x) => {
    if (typeof x === "number") return x;
    if (typeof x === "bigint") return Number(x);
    throw new TypeError(`GGUF ${key}: expected numbers`);
  });
}

/**
 * Reads the `tokenizer.ggml.*` keys of GGUF metadata (`parseGguf(bytes).metadata`: numbers or
 * bigints, booleans, strings, string arrays, typed arrays). Throws with the key's name when one
 * is missing or of the wrong type.
 */
export function vocabFromGgufMetadata(metadata: ReadonlyMap<string, unknown>): GgufVocab {
  const model = str(metadata, "tokenizer.ggml.model");
  if (model === undefined) {
    throw new Error("GGUF has no tokenizer.ggml.model: no embedded vocabulary");
  }
  if (model !== "llama" && model !== "gpt2" && model !== "bert") {
    throw new Error(
      `GGUF tokenizer.ggml.model "${model}" is not supported (supported: llama, gpt2, bert)`,
    );
  }
  const tokens = strings(metadata, "tokenizer.ggml.tokens");
  if (tokens === undefined) throw new Error("GGUF has no tokenizer.ggml.tokens");
  const scores = numbers(metadata, "tokenizer.ggml.scores");
  return {
    model,
    tokens,
    scores: scores ? Float32Array.from(scores) : undefined,
    tokenTypes: numbers(metadata, "tokenizer.ggml.token_type"),
    merges: strings(metadata, "tokenizer.ggml.merges"),
    bosId: num(metadata, "tokenizer.ggml.bos_token_id"),
    eosId: num(metadata, "tokenizer.ggml.eos_token_id"),
    unkId: num(metadata, "tokenizer.ggml.unknown_token_id"),
    padId: num(metadata, "tokenizer.ggml.padding_token_id"),
    sepId: num(metadata, "tokenizer.ggml.seperator_token_id"),
    clsId: num(metadata, "tokenizer.ggml.cls_token_id"),
    addBos: bool(metadata, "tokenizer.ggml.add_bos_token"),
    addEos: bool(metadata, "tokenizer.ggml.add_eos_token"),
    addSpacePrefix: bool(metadata, "tokenizer.ggml.add_space_prefix"),
    pre: str(metadata, "tokenizer.ggml.pre"),
  };
}

/** The tokenizer a GGUF vocabulary describes. */
export function tokenizerFromGgufVocab(vocab: GgufVocab): Tokenizer {
  switch (vocab.model) {
    case "llama":
      return new SpmTokenizer(vocab);
    case "gpt2":
      return BytePairTokenizer.fromGgufVocab(vocab);
    case "bert":
      return WordPieceTokenizer.fromGgufVocab(vocab);
  }
}

/** Shorthand: the tokenizer embedded in GGUF metadata (`parseGguf(bytes).metadata`). */
export function tokenizerFromGgufMetadata(metadata: ReadonlyMap<string, unknown>): Tokenizer {
  return tokenizerFromGgufVocab(vocabFromGgufMetadata(metadata));
}
