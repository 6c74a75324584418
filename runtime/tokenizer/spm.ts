/**
 * SentencePiece BPE over a GGUF "llama" vocabulary, as llama.cpp's llm_tokenizer_spm does it:
 * a space prefix (at the start and after each special token), spaces escaped to ▁ (U+2581), one
 * symbol per code point, merges by the score of the merged piece (leftmost on ties), and code
 * points outside the vocabulary emitted as `<0xXX>` byte tokens.
 */
import { PairTable } from "./merge.ts";
import { SegmentedMerger } from "./segment.ts";
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

const SPACE = "\u2581";

export class SpmTokenizer implements Tokenizer {
  readonly kind = "spm" as const;
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  private readonly ids: Map<string, number>;
  private readonly pairs: PairTable;
  private readonly merger: SegmentedMerger;
  private readonly byteIds: Int32Array;
  private readonly splitter: SpecialSplitter;
  private readonly types: ArrayLike<number>;
  private readonly pieceBytes: PieceBytes;

  constructor(readonly vocab: GgufVocab) {
    const { tokens } = vocab;
    const size = this.vocabSize = tokens.length;
    const scores = vocab.scores ?? new Float32Array(size);
    if (scores.length !== size) {
      throw new RangeError(`SPM vocabulary: ${size} tokens but ${scores.length} scores`);
    }
    this.types = vocab.tokenTypes ?? new Uint8Array(size).fill(TokenType.NORMAL);
    this.bosId = optionalId(vocab.bosId ?? 1, size, "BOS id");
    this.eosId = optionalId(vocab.eosId ?? 2, size, "EOS id");
    this.unkId = optionalId(vocab.unkId ?? 0, size, "UNK id");
    this.addBos = vocab.addBos ?? true;
    this.addEos = vocab.addEos ?? false;
    this.addSpacePrefix = vocab.addSpacePrefix ?? true;
    this.ids = tokenIndex(tokens);

    this.pairs = new PairTable();
    tokens.forEach((t, i) => {
      if (this.ids.get(t) !== i) return;
      for (let k = 1; k < t.length; k++) {
        const a = this.ids.get(t.slice(0, k));
        const b = this.ids.get(t.slice(k));
        if (a !== undefined && b !== undefined) this.pairs.add(a, b, i, scores[i]);
      }
    });

    this.merger = new SegmentedMerger(tokens, this.ids, this.pairs);
    // llama.cpp byte_to_token: "<0xXX>", else the byte as a one-character token.
    this.byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const hex = b.toString(16).toUpperCase().padStart(2, "0");
      this.byteIds[b] = this.ids.get(`<0x${hex}>`) ?? this.ids.get(String.fromCharCode(b)) ??
        this.unkId;
    }
    this.splitter = new SpecialSplitter(
      tokensOfType(vocab, TokenType.USER_DEFINED),
      tokensOfType(vocab, TokenType.CONTROL),
    );
    this.pieceBytes = new PieceBytes((id) => {
      const t = tokens[id];
      if (this.types[id] === TokenType.BYTE) {
        const b = parseByteToken(t);
        if (b >= 0) return Uint8Array.of(b);
      }
      if (this.types[id] === TokenType.CONTROL) return new Uint8Array(0);
      return utf8Encode(t.replaceAll(SPACE, " "));
    }, size);
  }

  tokenText(id: number): string {
    checkTokenId(id, this.vocabSize, "SPM tokenizer");
    return this.vocab.tokens[id];
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const { bos = this.addBos, eos = this.addEos, parseSpecial = false } = options;
    const out: number[] = [];
    if (bos && this.bosId >= 0) out.push(this.bosId);
    let prevSpecial = true;
    for (const f of this.splitter.split(text, parseSpecial)) {
      if (f.id !== undefined) {
        out.push(f.id);
        prevSpecial = true;
        continue;
      }
      const raw = this.addSpacePrefix && prevSpecial ? " " + f.text : f.text;
      this.encodeRaw(raw.replaceAll(" ", SPACE), out);
      prevSpecial = false;
    }
    if (eos && this.eosId >= 0) out.push(this.eosId);
    return out;
  }

  private encodeRaw(text: string, out: number[]): void {
    const ids = new Int32Array(text.length);
    let n = 0;
    for (const ch of text) {
      // A code point outside the vocabulary never merges; -(cp + 3) remembers it for the bytes.
      ids[n++] = this.ids.get(ch) ?? -(ch.codePointAt(0)! + 3);
    }
    n = this.merger.merge(ids, n);
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (id >= 0) out.push(id);
      else for (const b of utf8Encode(String.fromCodePoint(-id - 3))) out.push(this.byteIds[b]);
    }
  }

  private hidden = (id: number) => this.types[id] === TokenType.CONTROL;

  decode(ids: ArrayLike<number>): string {
    return decodePieces(ids, this.pieceBytes, this.hidden, this.addSpacePrefix);
  }

  decodeToken(prev: number, id: number): Uint8Array {
    checkTokenId(id, this.vocabSize, "SPM tokenizer");
    const b = this.pieceBytes.get(id);
    return this.addSpacePrefix && prev === this.bosId && b[0] === 0x20 ? b.subarray(1) : b;
  }
}
