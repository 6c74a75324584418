/**
 * BPE by merge rank: the text is cut into words (GPT-2 regex, or SentencePiece-style ▁ words),
 * each word starts as one symbol per character and the pair with the best (lowest) rank merges
 * first, leftmost on ties. Covers GGUF "gpt2" vocabularies (byte-level, as llama.cpp's
 * llm_tokenizer_bpe) and Hugging Face tokenizer.json BPE models (byte-level or with byte fallback).
 */
import { PairTable } from "./merge.ts";
import { SegmentedMerger } from "./segment.ts";
import {
  compilePattern,
  fromByteLevel,
  GGUF_PRE_PATTERNS,
  splitIsolated,
  toByteLevel,
} from "./pretokenize.ts";
import {
  checkTokenId,
  decodePieces,
  type EncodeOptions,
  parseByteToken,
  PieceBytes,
  SpecialSplitter,
  type Tokenizer,
  utf8Encode,
} from "./tokenizer.ts";
import { type GgufVocab, optionalId, tokenIndex, tokensOfType, TokenType } from "./vocab.ts";

export interface BpeConfig {
  tokens: string[];
  /** token → id; defaults to llama.cpp's rule (a later duplicate wins). */
  ids?: Map<string, number>;
  /** Best first. */
  merges: [string, string][];
  /** Words are UTF-8 bytes mapped through GPT-2's byte → unicode table before merging (and
   * pieces mapped back on decode). */
  byteLevel: boolean;
  /** Decode pieces through the byte table even though encode does not map (odd files). */
  byteLevelDecode?: boolean;
  /** A character outside the vocabulary becomes its `<0xXX>` tokens (else UNK). */
  byteFallback: boolean;
  unkId: number;
  /** Consecutive unknown characters become one UNK. */
  fuseUnk: boolean;
  /** A word that is itself a token is emitted whole, without merging (Llama 3). */
  ignoreMerges: boolean;
  /** Raw text → words (normalized, not yet byte-level mapped; `first` is true for the text
   * before any special token). */
  preTokenize: (text: string, first: boolean) => string[];
  bosId: number;
  eosId: number;
  addBos: boolean;
  addEos: boolean;
  /** Matched in raw text always (user-defined) or only with parseSpecial (control). */
  userDefined: [string, number][];
  control: [string, number][];
  /** Ids decode() skips (control tokens). */
  hidden: Set<number>;
  /** Pieces style only: the character that stands for a space (▁), and whether decode drops the
   * dummy-prefix space at the start. */
  spaceSymbol?: string;
  stripLeadingSpace?: boolean;
}

/** Cache of encoded words; books repeat words, so this skips most merging. */
const CACHE_LIMIT = 200_000;

export class BytePairTokenizer implements Tokenizer {
  readonly kind = "bpe" as const;
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly ids: Map<string, number>;
  private readonly pairs: PairTable;
  private readonly merger: SegmentedMerger;
  private readonly byteIds: Int32Array;
  private readonly splitter: SpecialSplitter;
  private readonly pieceBytes: PieceBytes;
  private readonly cache = new Map<string, Int32Array>();

  constructor(readonly config: BpeConfig) {
    const { tokens } = config;
    this.vocabSize = tokens.length;
    this.bosId = config.bosId;
    this.eosId = config.eosId;
    this.ids = config.ids ?? tokenIndex(tokens);
    this.pairs = new PairTable();
    config.merges.forEach(([a, b], rank) => {
      const ia = this.ids.get(a), ib = this.ids.get(b), im = this.ids.get(a + b);
      if (ia !== undefined && ib !== undefined && im !== undefined) {
        this.pairs.add(ia, ib, im, -rank);
      }
    });
    this.merger = new SegmentedMerger(tokens, this.ids, this.pairs);
    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      const hex = b.toString(16).toUpperCase().padStart(2, "0");
      this.byteIds[b] = this.ids.get(`<0x${hex}>`) ?? -1;
    }
    this.splitter = new SpecialSplitter(config.userDefined, config.control);
    const verbatim = new Set(config.userDefined.map(([, id]) => id));
    const space = config.spaceSymbol;
    this.pieceBytes = new PieceBytes((id) => {
      const t = tokens[id];
      if (config.hidden.has(id)) return new Uint8Array(0);
      if (verbatim.has(id)) return utf8Encode(t);
      if (config.byteLevel || config.byteLevelDecode) return fromByteLevel(t);
      const byte = config.byteFallback ? parseByteToken(t) : -1;
      if (byte >= 0) return Uint8Array.of(byte);
      return utf8Encode(space ? t.replaceAll(space, " ") : t);
    }, this.vocabSize);
  }

  /** GGUF "gpt2" vocabulary, as llama.cpp tokenizes it. */
  static fromGgufVocab(vocab: GgufVocab): BytePairTokenizer {
    const size = vocab.tokens.length;
    const pre = vocab.pre ?? "gpt-2";
    const pattern = GGUF_PRE_PATTERNS[pre === "default" ? "gpt-2" : pre];
    if (pattern === undefined) {
      throw new Error(
        `GGUF tokenizer.ggml.pre "${pre}" is not supported (supported: ${
          Object.keys(GGUF_PRE_PATTERNS).join(", ")
        })`,
      );
    }
    const re = compilePattern(pattern);
    const control = tokensOfType(vocab, TokenType.CONTROL);
    return new BytePairTokenizer({
      tokens: vocab.tokens,
      merges: (vocab.merges ?? []).map(splitMerge),
      byteLevel: true,
      byteFallback: false,
      unkId: optionalId(vocab.unkId, size, "UNK id"),
      fuseUnk: false,
      ignoreMerges: pre === "llama-bpe" || pre === "llama3",
      preTokenize: (text) => splitIsolated(text, re),
      bosId: optionalId(vocab.bosId, size, "BOS id"),
      eosId: optionalId(vocab.eosId, size, "EOS id"),
      addBos: vocab.addBos ?? false,
      addEos: vocab.addEos ?? false,
      userDefined: tokensOfType(vocab, TokenType.USER_DEFINED),
      control,
      hidden: new Set(control.map(([, id]) => id)),
    });
  }

  tokenText(id: number): string {
    checkTokenId(id, this.vocabSize, "BPE tokenizer");
    return this.config.tokens[id];
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const { bos = this.config.addBos, eos = this.config.addEos, parseSpecial = false } = options;
    const out: number[] = [];
    if (bos && this.bosId >= 0) out.push(this.bosId);
    let first = true;
    for (const f of this.splitter.split(text, parseSpecial)) {
      if (f.id !== undefined) {
        out.push(f.id);
      } else {
        for (const word of this.config.preTokenize(f.text, first)) {
          for (const id of this.encodeWord(word)) out.push(id);
        }
      }
      first = false;
    }
    if (eos && this.eosId >= 0) out.push(this.eosId);
    return out;
  }

  private encodeWord(word: string): Int32Array {
    let ids = this.cache.get(word);
    if (ids) return ids;
    const key = word;
    if (this.config.byteLevel) word = toByteLevel(utf8Encode(word));
    const whole = this.config.ignoreMerges ? this.ids.get(word) : undefined;
    if (whole !== undefined) {
      ids = Int32Array.of(whole);
    } else {
      ids = new Int32Array(word.length * 4);
      let n = 0;
      const { unkId, fuseUnk } = this.config;
      for (const ch of word) {
        const id = this.ids.get(ch);
        if (id !== undefined) {
          ids[n++] = id;
          continue;
        }
        if (this.config.byteFallback) {
          const bytes = utf8Encode(ch);
          if (bytes.every((b) => this.byteIds[b] >= 0)) {
            for (const b of bytes) ids[n++] = this.byteIds[b];
            continue;
          }
        }
        if (unkId < 0) {
          throw new Error(
            `BPE: character ${
              JSON.stringify(ch)
            } is not in the vocabulary and there is no UNK token`,
          );
        }
        if (!(fuseUnk && n > 0 && ids[n - 1] === unkId)) ids[n++] = unkId;
      }
      n = this.merger.merge(ids, n);
      ids = ids.slice(0, n);
    }
    if (key.length <= 64) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(key, ids);
    }
    return ids;
  }

  decode(ids: ArrayLike<number>): string {
    return decodePieces(
      ids,
      this.pieceBytes,
      (id) => this.config.hidden.has(id),
      this.config.stripLeadingSpace ?? false,
    );
  }

  decodeToken(prev: number, id: number): Uint8Array {
    checkTokenId(id, this.vocabSize, "BPE tokenizer");
    const b = this.pieceBytes.get(id);
    const strip = this.config.stripLeadingSpace && prev === this.bosId && b[0] === 0x20;
    return strip ? b.subarray(1) : b;
  }
}

/** "Ġ t" → ["Ġ", "t"] (split at the first space after the first character). */
export function splitMerge(line: string): [string, string] {
  const i = line.indexOf(" ", 1);
  if (i < 0) throw new Error(`BPE merge ${JSON.stringify(line)} is not "left right"`);
  return [line.slice(0, i), line.slice(i + 1)];
}
