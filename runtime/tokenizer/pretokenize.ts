/**
 * Pre-tokenization for byte-level BPE: the regexes that cut text into words before merging, and
 * GPT-2's byte ↔ unicode table that makes every byte a printable character.
 */

/** GPT-2's pattern (the final `\s+` catches whitespace the lookahead leaves; gaps are kept anyway). */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** Llama 3's pattern (tokenizer.json of Meta-Llama-3; GGUF pre "llama-bpe"). */
export const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** GGUF `tokenizer.ggml.pre` → pattern, for the families whose pattern is known here. */
export const GGUF_PRE_PATTERNS: Record<string, string> = {
  "gpt-2": GPT2_PATTERN,
  "gpt2": GPT2_PATTERN,
  "llama-bpe": LLAMA3_PATTERN,
  "llama3": LLAMA3_PATTERN,
};

/** A global unicode regex for a Hugging Face / llama.cpp pattern. */
export function compilePattern(pattern: string): RegExp {
  try {
    return new RegExp(pattern, "gu");
  } catch (e) {
    throw new SyntaxError(
      `pre-tokenizer pattern ${JSON.stringify(pattern)}: ${(e as Error).message}`,
    );
  }
}

/**
 * Splits `text` into the regex's matches and the gaps between them, in order (Hugging Face's
 * Split with behavior "Isolated"; llama.cpp's unicode_regex_split keeps gaps the same way).
 */
export function splitIsolated(text: string, re: RegExp): string[] {
  const out: string[] = [];
  let last = 0;
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

let byteToChar: string[] | undefined;
let charToByte: Map<string, number> | undefined;

/** GPT-2's bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100 onwards. */
export function byteLevelTable(): { byteToChar: string[]; charToByte: Map<string, number> } {
  if (!byteToChar || !charToByte) {
    byteToChar = new Array(256);
    charToByte = new Map();
    let n = 0;
    for (let b = 0; b < 256; b++) {
      const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
      const c = String.fromCharCode(printable ? b : 256 + n++);
      byteToChar[b] = c;
      charToByte.set(c, b);
    }
  }
  return { byteToChar, charToByte };
}

/** UTF-8 bytes of `word`, each as its byte-level character. */
export function toByteLevel(bytes: Uint8Array): string {
  const { byteToChar } = byteLevelTable();
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += byteToChar[bytes[i]];
  return s;
}

/** Byte-level characters back to bytes; characters outside the table are UTF-8 encoded as is. */
export function fromByteLevel(text: string): Uint8Array {
  const { charToByte } = byteLevelTable();
  const out: number[] = [];
  for (const ch of text) {
    const b = charToByte.get(ch);
    if (b !== undefined) out.push(b);
    else out.push(...new TextEncoder().encode(ch));
  }
  return Uint8Array.from(out);
}
