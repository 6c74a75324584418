/** Tokenizers: llama2.c, GGUF-embedded (SPM, GPT-2 BPE, WordPiece) and Hugging Face tokenizer.json. */
export type { EncodeOptions, Tokenizer, TokenizerKind } from "./tokenizer.ts";
export { TokenStreamDecoder } from "./tokenizer.ts";
export { Llama2cTokenizer, loadLlama2cTokenizer } from "./llama2c.ts";
export type { GgufVocab } from "./vocab.ts";
export { TokenType } from "./vocab.ts";
export {
  tokenizerFromGgufMetadata,
  tokenizerFromGgufVocab,
  vocabFromGgufMetadata,
} from "./gguf_vocab.ts";
export { SpmTokenizer } from "./spm.ts";
export { BytePairTokenizer } from "./bpe.ts";
export { WordPieceTokenizer } from "./wordpiece.ts";
export type { HfLoadOptions, HfTokenizerJson } from "./hf.ts";
export { llama2cToHfTokenizerJson, loadHfTokenizerJson } from "./hf.ts";
