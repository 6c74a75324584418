/**
 * `GgufVocab`: a vocabulary as GGUF stores it under `tokenizer.ggml.*`, the one plain object the
 * GGUF-backed tokenizers are built from (so they do not depend on the file parser).
 */

/** GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type). */
export const TokenType = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export interface GgufVocab {
  /** tokenizer.ggml.model: "llama" = SentencePiece BPE, "gpt2" = byte-level BPE, "bert" = WordPiece. */
  model: "llama" | "gpt2" | "bert";
  tokens: string[];
  scores?: ArrayLike<number>;
  tokenTypes?: ArrayLike<number>;
  /** "left right" per line, best first (gpt2). */
  merges?: string[];
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  /** bert: [SEP] and [CLS] (GGUF's key is spelled `seperator_token_id`). */
  sepId?: number;
  clsId?: number;
  addBos?: boolean;
  addEos?: boolean;
  addSpacePrefix?: boolean;
  /** tokenizer.ggml.pre: the pre-tokenizer regex family for gpt2 vocabularies. */
  pre?: string;
}

/**
 * token → id as llama.cpp builds it (a later duplicate overwrites an earlier one), empty tokens
 * renamed "[EMPTY_i]" so they can never match.
 */
export function tokenIndex(tokens: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  tokens.forEach((t, i) => m.set(t.length ? t : `[EMPTY_${i}]`, i));
  return m;
}

/** Tokens of the given types, as [text, id] pairs for the special-token splitter. */
export function tokensOfType(vocab: GgufVocab, type: number): [string, number][] {
  const out: [string, number][] = [];
  const types = vocab.tokenTypes;
  if (!types) return out;
  for (let i = 0; i < vocab.tokens.length; i++) {
    if (types[i] === type) out.push([vocab.tokens[i], i]);
  }
  return out;
}

/** The id or -1, validated against the vocabulary size. */
export function optionalId(id: number | undefined, size: number, what: string): number {
  if (id === undefined || id < 0) return -1;
  if (!Number.isInteger(id) || id >= size) {
    throw new RangeError(`${what} ${id} is outside the vocabulary of ${size} tokens`);
  }
  return id;
}
