/**
 * The interface every tokenizer implements, and the small pieces they share: UTF-8 helpers, the
 * streaming decoder, and the splitter that cuts special/user-defined tokens out of raw text.
 * Host-agnostic: no Deno API.
 */

/** Which algorithm a tokenizer runs (not which file it came from). */
export type TokenizerKind =
  | "llama2c" // llama2.c run.c encode(): SentencePiece BPE by score, byte fallback
  | "spm" // llama.cpp llm_tokenizer_spm: SentencePiece BPE by score, ▁ for spaces
  | "bpe" // BPE by merge rank (GPT-2 byte-level, or Hugging Face SentencePiece-style)
  | "wordpiece"; // BERT: basic tokenizer, then greedy longest match

export interface EncodeOptions {
  /** Prepend the BOS token ([CLS] for WordPiece). Default: what the vocabulary asks for. */
  bos?: boolean;
  /** Append the EOS token ([SEP] for WordPiece). Default: what the vocabulary asks for. */
  eos?: boolean;
  /**
   * Recognise control tokens written in the text (e.g. "<s>", "<|endoftext|>") as themselves.
   * Default false: training text that contains "<s>" stays text. User-defined tokens are always
   * recognised, as llama.cpp does.
   */
  parseSpecial?: boolean;
}

export interface Tokenizer {
  readonly kind: TokenizerKind;
  readonly vocabSize: number;
  /** -1 when the vocabulary has none. */
  readonly bosId: number;
  readonly eosId: number;
  encode(text: string, options?: EncodeOptions): number[];
  /** Text of a whole sequence: control tokens are skipped, the dummy-prefix space is removed. */
  decode(ids: ArrayLike<number>): string;
  /**
   * The bytes token `id` contributes when it follows `prev` (for streaming generation). Bytes, not
   * a string, because a byte-fallback token may carry part of a UTF-8 character; feed them to a
   * `TokenStreamDecoder`. After BOS the leading space is dropped, as llama2.c does.
   */
  decodeToken(prev: number, id: number): Uint8Array;
  /** The vocabulary entry of `id`, as stored (e.g. "▁the", "<0x0A>", "Ġthe", "##ing"). */
  tokenText(id: number): string;
}

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Lossy UTF-8 decode (invalid bytes become U+FFFD). */
export function utf8Decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** Concatenate byte pieces. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Turns the byte pieces of generated tokens into text as soon as whole characters arrive. */
export class TokenStreamDecoder {
  private readonly utf8 = new TextDecoder("utf-8", { fatal: false });
  private prev: number;

  constructor(private readonly tokenizer: Tokenizer, prev = -1) {
    this.prev = prev;
  }

  /** Text completed by token `id` (may be "" while a multi-byte character is still partial). */
  push(id: number): string {
    const bytes = this.tokenizer.decodeToken(this.prev, id);
    this.prev = id;
    return this.utf8.decode(bytes, { stream: true });
  }

  /** Whatever is left (a dangling partial character becomes U+FFFD). */
  flush(): string {
    return this.utf8.decode();
  }
}

/** "<0x0A>" → 10; anything else → -1. */
export function parseByteToken(text: string): number {
  return /^<0x[0-9A-Fa-f]{2}>$/.test(text) ? parseInt(text.slice(3, 5), 16) : -1;
}

/** Piece bytes shared by the decoders: a cached UTF-8 encoding per id. */
export class PieceBytes {
  private readonly cache: (Uint8Array | undefined)[];
  constructor(private readonly render: (id: number) => Uint8Array, size: number) {
    this.cache = new Array(size);
  }
  get(id: number): Uint8Array {
    if (id < 0 || id >= this.cache.length) return EMPTY;
    let b = this.cache[id];
    if (b === undefined) this.cache[id] = b = this.render(id);
    return b;
  }
}

/**
 * Shared decode: concatenate piece bytes, skipping `hidden` ids; when `stripFirstSpace`, one
 * leading space of the first piece (the dummy prefix) is dropped.
 */
export function decodePieces(
  ids: ArrayLike<number>,
  pieces: PieceBytes,
  hidden: (id: number) => boolean,
  stripFirstSpace: boolean,
): string {
  const parts: Uint8Array[] = [];
  let first = true;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (hidden(id)) continue;
    let b = pieces.get(id);
    if (first && stripFirstSpace && b.length > 0 && b[0] === 0x20) b = b.subarray(1);
    first = false;
    parts.push(b);
  }
  return utf8Decode(concatBytes(parts));
}

export function checkTokenId(id: number, vocabSize: number, what: string): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new RangeError(`${what}: token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
  }
}

/** A piece of the input: raw text to tokenize, or a special token already resolved. */
export type Fragment = { text: string; id?: undefined } | { text?: undefined; id: number };

/**
 * Cuts tokens that must be matched verbatim (user-defined always; control only when asked) out of
 * the text, longest first, left to right, as llama.cpp's tokenizer_st_partition does.
 */
export class SpecialSplitter {
  private readonly always: [string, number][];
  private readonly all: [string, number][];

  constructor(userDefined: [string, number][], control: [string, number][]) {
    const byLength = (a: [string, number], b: [string, number]) => b[0].length - a[0].length;
    this.always = userDefined.filter(([t]) => t.length > 0).sort(byLength);
    this.all = [...this.always, ...control.filter(([t]) => t.length > 0)].sort(byLength);
  }

  split(text: string, parseSpecial: boolean): Fragment[] {
    const list = parseSpecial ? this.all : this.always;
    if (list.length === 0 || text.length === 0) return text.length ? [{ text }] : [];
    let frags: Fragment[] = [{ text }];
    for (const [tok, id] of list) {
      const next: Fragment[] = [];
      for (const f of frags) {
        if (f.text === undefined || !f.text.includes(tok)) {
          next.push(f);
          continue;
        }
        const parts = f.text.split(tok);
        for (let i = 0; i < parts.length; i++) {
          if (i > 0) next.push({ id });
          if (parts[i].length) next.push({ text: parts[i] });
        }
      }
      frags = next;
    }
    return frags;
  }
}
