/**
 * WordPiece (BERT): the basic tokenizer (drop control characters, split on whitespace, strip
 * accents, lowercase, punctuation and CJK characters as words of their own), then greedy
 * longest-match-first pieces per word, a word with no full cover becoming [UNK]. GGUF marks
 * word-initial pieces with a leading ▁ (llama.cpp's convert strips BERT's "##" from the others);
 * Hugging Face vocabularies mark continuations with "##". Both are handled.
 */
import {
  checkTokenId,
  decodePieces,
  type EncodeOptions,
  PieceBytes,
  SpecialSplitter,
  type Tokenizer,
  utf8Encode,
} from "./tokenizer.ts";
import { type GgufVocab, optionalId, tokensOfType, TokenType } from "./vocab.ts";

const WORD_START = "\u2581";

const WHITESPACE = /\p{White_Space}/u;
const CONTROL = /\p{C}/u;
const NONSPACING_MARK = /\p{Mn}/gu;
const PUNCTUATION = /\p{P}/u;
const SYMBOL = /\p{S}/u;

/** BERT's "Chinese character" blocks (CJK ideographs; not Hangul or kana). */
export function isCjk(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/**
 * BERT's basic tokenizer (lowercasing, accent-stripping variant): text → words. Punctuation,
 * ASCII symbols ($+<=>^`|~) and CJK ideographs are single-character words.
 */
export function bertWords(text: string): string[] {
  const words: string[] = [];
  let word = "";
  const flush = () => {
    if (word.length) words.push(word);
    word = "";
  };
  for (const ch of text.normalize("NFD").replace(NONSPACING_MARK, "")) {
    const cp = ch.codePointAt(0)!;
    if (WHITESPACE.test(ch)) {
      flush();
      continue;
    }
    if (cp === 0 || cp === 0xfffd || CONTROL.test(ch)) continue;
    const lower = ch.toLowerCase();
    if (PUNCTUATION.test(ch) || (cp < 0x7f && SYMBOL.test(ch)) || isCjk(cp)) {
      flush();
      words.push(lower);
    } else {
      word += lower;
    }
  }
  flush();
  return words;
}

export interface WordPieceConfig {
  tokens: string[];
  /** Piece text → id for word-initial pieces and for continuations (marker already removed). */
  starts: Map<string, number>;
  continuations: Map<string, number>;
  unkId: number;
  clsId: number;
  sepId: number;
  addCls: boolean;
  addSep: boolean;
  userDefined: [string, number][];
  control: [string, number][];
}

export class WordPieceTokenizer implements Tokenizer {
  readonly kind = "wordpiece" as const;
  readonly vocabSize: number;
  /** [CLS] plays BOS, [SEP] plays EOS. */
  readonly bosId: number;
  readonly eosId: number;
  private readonly maxPieceLength: number;
  private readonly splitter: SpecialSplitter;
  private readonly hidden: Set<number>;
  private readonly pieceBytes: PieceBytes;

  constructor(readonly config: WordPieceConfig) {
    this.vocabSize = config.tokens.length;
    this.bosId = config.clsId;
    this.eosId = config.sepId;
    let max = 1;
    for (const m of [config.starts, config.continuations]) {
      for (const k of m.keys()) max = Math.max(max, k.length);
    }
    this.maxPieceLength = max;
    this.splitter = new SpecialSplitter(config.userDefined, config.control);
    this.hidden = new Set(config.control.map(([, id]) => id).filter((id) => id !== config.unkId));
    const continuation = new Set(config.continuations.values());
    this.pieceBytes = new PieceBytes((id) => {
      if (this.hidden.has(id)) return new Uint8Array(0);
      const t = config.tokens[id];
      if (continuation.has(id) && id !== config.unkId) return utf8Encode(t);
      return utf8Encode(" " + (t.startsWith(WORD_START) ? t.slice(1) : t));
    }, this.vocabSize);
  }

  /** GGUF "bert" vocabulary: word-initial pieces start with ▁, the rest are continuations. */
  static fromGgufVocab(vocab: GgufVocab): WordPieceTokenizer {
    const size = vocab.tokens.length;
    const starts = new Map<string, number>(), continuations = new Map<string, number>();
    vocab.tokens.forEach((t, i) => {
      if (t.startsWith(WORD_START)) starts.set(t.slice(1), i);
      else continuations.set(t, i);
    });
    return new WordPieceTokenizer({
      tokens: vocab.tokens,
      starts,
      continuations,
      unkId: optionalId(vocab.unkId ?? 100, size, "UNK id"),
      clsId: optionalId(vocab.clsId ?? vocab.bosId ?? 101, size, "CLS id"),
      sepId: optionalId(vocab.sepId ?? vocab.eosId ?? 102, size, "SEP id"),
      addCls: vocab.addBos ?? true,
      addSep: vocab.addEos ?? true,
      userDefined: tokensOfType(vocab, TokenType.USER_DEFINED),
      control: tokensOfType(vocab, TokenType.CONTROL),
    });
  }

  /** Hugging Face vocab.txt / tokenizer.json style: continuations start with "##". */
  static fromHfVocab(
    tokens: string[],
    specials: { unk?: string; cls?: string; sep?: string } = {},
    prefix = "##",
  ): WordPieceTokenizer {
    const starts = new Map<string, number>(), continuations = new Map<string, number>();
    tokens.forEach((t, i) => {
      if (t.startsWith(prefix) && t.length > prefix.length) {
        continuations.set(t.slice(prefix.length), i);
      } else starts.set(t, i);
    });
    const id = (t: string) => starts.get(t) ?? -1;
    const control = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
      .filter((t) => starts.has(t)).map((t): [string, number] => [t, id(t)]);
    return new WordPieceTokenizer({
      tokens,
      starts,
      continuations,
      unkId: id(specials.unk ?? "[UNK]"),
      clsId: id(specials.cls ?? "[CLS]"),
      sepId: id(specials.sep ?? "[SEP]"),
      addCls: true,
      addSep: true,
      userDefined: [],
      control,
    });
  }

  tokenText(id: number): string {
    checkTokenId(id, this.vocabSize, "WordPiece tokenizer");
    return this.config.tokens[id];
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const { bos = this.config.addCls, eos = this.config.addSep, parseSpecial = false } = options;
    const out: number[] = [];
    if (bos && this.bosId >= 0) out.push(this.bosId);
    for (const f of this.splitter.split(text, parseSpecial)) {
      if (f.id !== undefined) out.push(f.id);
      else for (const w of bertWords(f.text)) this.encodeWord(w, out);
    }
    if (eos && this.eosId >= 0) out.push(this.eosId);
    return out;
  }

  private encodeWord(word: string, out: number[]): void {
    const mark = out.length;
    for (let i = 0; i < word.length;) {
      const table = i === 0 ? this.config.starts : this.config.continuations;
      let found = -1, end = Math.min(word.length, i + this.maxPieceLength);
      for (; end > i; end--) {
        const id = table.get(word.slice(i, end));
        if (id !== undefined) {
          found = id;
          break;
        }
      }
      if (found < 0) {
        out.length = mark;
        if (this.config.unkId < 0) {
          throw new Error(
            `WordPiece: no pieces cover ${JSON.stringify(word)} and there is no [UNK]`,
          );
        }
        out.push(this.config.unkId);
        return;
      }
      out.push(found);
      i = end;
    }
  }

  /** Words joined by spaces, continuations glued on (lowercased, accents gone: not lossless). */
  decode(ids: ArrayLike<number>): string {
    return decodePieces(ids, this.pieceBytes, (id) => this.hidden.has(id), true);
  }

  decodeToken(prev: number, id: number): Uint8Array {
    checkTokenId(id, this.vocabSize, "WordPiece tokenizer");
    const b = this.pieceBytes.get(id);
    return (prev < 0 || prev === this.bosId) && b[0] === 0x20 ? b.subarray(1) : b;
  }
}
