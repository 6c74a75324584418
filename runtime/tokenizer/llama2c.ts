/**
 * llama2.c's tokenizer (`tokenizer.bin`: int32 max_token_length, then per token f32 score, int32
 * length, bytes) and its encode() from run.c, reproduced exactly: BOS first, a dummy-prefix " "
 * token, one token per UTF-8 code point or its bytes as byte tokens (id = byte + 3), then merge the
 * adjacent pair whose concatenation is in the vocabulary with the highest score, leftmost on ties.
 * Spaces are stored as " " (the exporter replaced SentencePiece's ▁).
 */
import { FormatError } from "../formats/errors.ts";
import { PairTable } from "./merge.ts";
import { SegmentedMerger } from "./segment.ts";
import {
  checkTokenId,
  decodePieces,
  type EncodeOptions,
  parseByteToken,
  PieceBytes,
  type Tokenizer,
  utf8Encode,
} from "./tokenizer.ts";

/** run.c's fixed ids. */
const UNK = 0, BOS = 1, EOS = 2, BYTE0 = 3;

export class Llama2cTokenizer implements Tokenizer {
  readonly kind = "llama2c" as const;
  readonly bosId = BOS;
  readonly eosId = EOS;
  readonly unkId = UNK;
  readonly vocabSize: number;
  /** The pair table run.c searches by string concatenation, precomputed once. */
  readonly pairs: PairTable;
  private readonly ids = new Map<string, number>();
  private readonly merger: SegmentedMerger;
  private readonly pieceBytes: PieceBytes;

  constructor(
    readonly pieces: string[],
    readonly scores: Float32Array,
    readonly maxTokenLength = 0,
  ) {
    if (pieces.length !== scores.length) {
      throw new RangeError(
        `llama2.c tokenizer: ${pieces.length} pieces but ${scores.length} scores`,
      );
    }
    this.vocabSize = pieces.length;
    if (this.vocabSize < BYTE0 + 256) {
      throw new RangeError(
        `llama2.c tokenizer: vocabulary of ${this.vocabSize} is too small for byte fallback ` +
          `(needs ids 3..258 for bytes)`,
      );
    }
    // run.c looks strings up by binary search over a sorted copy; with no duplicates (checked by
    // tests for stories260K) the first id is the only one.
    pieces.forEach((p, i) => {
      if (!this.ids.has(p)) this.ids.set(p, i);
    });
    this.pairs = new PairTable();
    pieces.forEach((p, i) => {
      if (this.ids.get(p) !== i) return;
      for (let k = 1; k < p.length; k++) {
        const a = this.ids.get(p.slice(0, k));
        const b = this.ids.get(p.slice(k));
        if (a !== undefined && b !== undefined) this.pairs.add(a, b, i, scores[i]);
      }
    });
    this.merger = new SegmentedMerger(pieces, this.ids, this.pairs, -1e10);
    this.pieceBytes = new PieceBytes((id) => {
      const byte = parseByteToken(pieces[id]);
      return byte >= 0 ? Uint8Array.of(byte) : utf8Encode(pieces[id]);
    }, this.vocabSize);
  }

  /** Id of a piece as stored (spaces as " "), or -1. */
  lookup(piece: string): number {
    return this.ids.get(piece) ?? -1;
  }

  tokenText(id: number): string {
    checkTokenId(id, this.vocabSize, "llama2.c tokenizer");
    return this.pieces[id];
  }

  encode(text: string, { bos = true, eos = false }: EncodeOptions = {}): number[] {
    const ids = new Int32Array(text.length * 3 + 3); // ≤ 4 bytes per code point (2 units)
    let n = 0;
    if (bos) ids[n++] = BOS;
    if (text.length > 0) ids[n++] = this.ids.get(" ") ?? BYTE0 + 0x20;
    for (const ch of text) {
      const id = this.ids.get(ch);
      if (id !== undefined) ids[n++] = id;
      else for (const b of utf8Encode(ch)) ids[n++] = b + BYTE0;
    }
    // run.c merges over the whole array, BOS included (it never matches a pair in practice).
    n = this.merger.merge(ids, n);
    const out = Array.from(ids.subarray(0, n));
    if (eos) out.push(EOS);
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    return decodePieces(ids, this.pieceBytes, (id) => id === BOS || id === EOS, true);
  }

  /** run.c decode(): after BOS a leading space is dropped; `<0xXX>` pieces are raw bytes. */
  decodeToken(prev: number, id: number): Uint8Array {
    checkTokenId(id, this.vocabSize, "llama2.c tokenizer");
    if (id === BOS || id === EOS) return new Uint8Array(0);
    const b = this.pieceBytes.get(id);
    return prev === BOS && b[0] === 0x20 ? b.subarray(1) : b;
  }
}

/**
 * Reads llama2.c's `tokenizer.bin`. `vocabSize` comes from the checkpoint header (the file does
 * not store it); without it, tokens are read until the end of the file.
 */
export function loadLlama2cTokenizer(
  bytes: Uint8Array,
  vocabSize?: number,
  file = "tokenizer.bin",
): Llama2cTokenizer {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) {
    throw new FormatError(file, `${bytes.length} bytes is too short for a llama2.c tokenizer`);
  }
  const maxTokenLength = view.getInt32(0, true);
  const pieces: string[] = [];
  const scores: number[] = [];
  const utf8 = new TextDecoder();
  let o = 4;
  while (vocabSize === undefined ? o < bytes.length : pieces.length < vocabSize) {
    if (o + 8 > bytes.length) {
      throw new FormatError(
        file,
        `ends at byte ${o} inside token ${pieces.length}` +
          (vocabSize === undefined ? "" : ` of ${vocabSize} (is the vocabulary size right?)`),
      );
    }
    scores.push(view.getFloat32(o, true));
    const len = view.getInt32(o + 4, true);
    o += 8;
    if (len < 0 || o + len > bytes.length) {
      throw new FormatError(file, `token ${pieces.length} claims ${len} bytes at offset ${o - 4}`);
    }
    pieces.push(utf8.decode(bytes.subarray(o, o + len)));
    o += len;
  }
  return new Llama2cTokenizer(pieces, Float32Array.from(scores), maxTokenLength);
}
