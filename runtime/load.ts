/**
 * Model + tokenizer loading for the CLI and the runtimes (Deno edge: reads files).
 * A `--tokenizer FILE` overrides whatever goes with the model: a llama2.c `.bin`,
 * a `tokenizer.json` or a `.gguf`'s embedded vocabulary.
 */
import { parseGguf } from "./formats/gguf.ts";
import type { GgufTokenizer } from "./formats/gguf_llama.ts";
import type { LlamaWeights } from "./model/weights.ts";
import {
  loadWeights,
  type ResolvedModel,
  resolveModel,
  type ResolveOptions,
  type TokenizerRef,
} from "./resolve.ts";
import {
  type Llama2cTokenizer,
  loadHfTokenizerJson,
  loadLlama2cTokenizer,
  type Tokenizer,
} from "./tokenizer/mod.ts";
import { tokenizerFromGgufMetadata } from "./tokenizer/gguf_vocab.ts";

export interface LoadedModel {
  resolved: ResolvedModel;
  weights: LlamaWeights;
  tokenizer: Tokenizer | null;
  tokenizerPath: string | null;
}

export function tokenizerRefFor(path: string): TokenizerRef {
  const lower = path.toLowerCase();
  if (lower.endsWith(".gguf")) return { kind: "gguf", path };
  if (lower.endsWith(".json")) return { kind: "hf-json", path };
  return { kind: "llama2c", path };
}

export async function loadTokenizer(ref: TokenizerRef, vocabSize?: number): Promise<Tokenizer> {
  const bytes = await Deno.readFile(ref.path).catch((e) => {
    throw new Error(`tokenizer ${ref.path}: cannot read (${(e as Error).message})`);
  });
  let tok: Tokenizer;
  switch (ref.kind) {
    case "llama2c":
      tok = loadLlama2cTokenizer(bytes, vocabSize, ref.path);
      break;
    case "hf-json":
      tok = loadHfTokenizerJson(new TextDecoder().decode(bytes));
      break;
    case "gguf":
      tok = tokenizerFromGgufMetadata(parseGguf(bytes, ref.path).metadata);
      break;
  }
  if (vocabSize !== undefined && tok.vocabSize > vocabSize) {
    throw new Error(
      `tokenizer ${ref.path} has ${tok.vocabSize} tokens but the model's vocabulary is ${vocabSize}`,
    );
  }
  return tok;
}

/** Resolves and loads a model argument (path, known name or synthetic:<preset>). */
export async function loadModel(
  arg: string,
  opts: ResolveOptions & { tokenizer?: string; seed?: number; requireTokenizer?: boolean } = {},
): Promise<LoadedModel> {
  const resolved = await resolveModel(arg, opts);
  const weights = await loadWeights(resolved, opts);
  const ref = opts.tokenizer ? tokenizerRefFor(opts.tokenizer) : resolved.tokenizer;
  if (!ref) {
    if (opts.requireTokenizer) {
      throw new Error(
        `${arg}: no tokenizer found (${
          resolved.tokenizerProblem ?? "none beside the model"
        }); pass --tokenizer FILE`,
      );
    }
    return { resolved, weights, tokenizer: null, tokenizerPath: null };
  }
  return {
    resolved,
    weights,
    tokenizer: await loadTokenizer(ref, weights.config.vocabSize),
    tokenizerPath: ref.path,
  };
}

const SPM_SPACE = "\u2581";

/** A llama2.c tokenizer as GGUF `tokenizer.ggml.*` data (SentencePiece "llama" model). */
export function llama2cToGgufTokenizer(tok: Llama2cTokenizer): GgufTokenizer {
  const specials = ["<unk>", "<s>", "</s>"];
  const tokens = tok.pieces.map((p, i) => (i < 3 ? specials[i] : p.replaceAll(" ", SPM_SPACE)));
  // llama.cpp token types: 2 unknown, 3 control, 6 byte, 1 normal.
  const tokenTypes = tokens.map((t, i) =>
    i === 0 ? 2 : i < 3 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1
  );
  return {
    model: "llama",
    tokens,
    scores: tok.scores,
    tokenTypes,
    bosId: tok.bosId,
    eosId: tok.eosId,
    unknownId: 0,
    addBos: true,
    addEos: false,
  };
}
