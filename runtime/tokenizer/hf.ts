/**
 * Hugging Face `tokenizer.json` with a BPE model: the Llama (SentencePiece-converted) style —
 * Prepend/Replace normalizer or Metaspace pre-tokenizer, byte fallback — and the GPT-2 ByteLevel
 * style, plus Split/Digits/Sequence pre-tokenizers. And the converter from a llama2.c tokenizer to
 * that format (for `convert --to hf`).
 */
import { BytePairTokenizer, splitMerge } from "./bpe.ts";
import type { Llama2cTokenizer } from "./llama2c.ts";
import { compilePattern, GPT2_PATTERN, splitIsolated } from "./pretokenize.ts";

/** The parts of tokenizer.json read here (other fields are ignored). */
export interface HfTokenizerJson {
  version?: string;
  truncation?: unknown;
  padding?: unknown;
  added_tokens?: { id: number; content: string; special?: boolean }[];
  normalizer?: HfComponent | null;
  pre_tokenizer?: HfComponent | null;
  post_processor?: HfComponent | null;
  decoder?: HfComponent | null;
  model: {
    type?: string;
    vocab: Record<string, number>;
    merges?: (string | [string, string])[];
    unk_token?: string | null;
    byte_fallback?: boolean;
    fuse_unk?: boolean;
    ignore_merges?: boolean;
    continuing_subword_prefix?: string | null;
    end_of_word_suffix?: string | null;
    dropout?: number | null;
  };
}

/** A normalizer, pre-tokenizer, post-processor or decoder node: `type` plus its fields. */
export interface HfComponent {
  type: string;
  [field: string]: unknown;
}

export interface HfLoadOptions {
  /** Token texts to use as BOS/EOS (tokenizer_config.json's bos_token/eos_token). */
  bosToken?: string;
  eosToken?: string;
  /** Override whether encode() adds them by default. */
  addBos?: boolean;
  addEos?: boolean;
}

const SPM_SPACE = "\u2581";

function fail(what: string): never {
  throw new Error(`tokenizer.json: ${what}`);
}

function children(node: HfComponent, field: string): HfComponent[] {
  const v = node[field];
  if (!Array.isArray(v)) fail(`${node.type} has no "${field}" list`);
  return v as HfComponent[];
}

/** {String: " "} or {Regex: "..."} → a global regex. */
function patternOf(node: HfComponent): RegExp {
  const p = node.pattern as { String?: string; Regex?: string } | undefined;
  if (p?.String !== undefined) {
    return new RegExp(p.String.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gu");
  }
  if (p?.Regex !== undefined) return compilePattern(p.Regex);
  return fail(`${node.type} has no pattern`);
}

type Normalize = (text: string) => string;

function buildNormalizer(node: HfComponent | null | undefined): Normalize {
  if (!node) return (t) => t;
  switch (node.type) {
    case "Sequence": {
      const steps = children(node, "normalizers").map(buildNormalizer);
      return (t) => steps.reduce((s, f) => f(s), t);
    }
    case "Prepend": {
      const p = String(node.prepend ?? "");
      return (t) => (t.length ? p + t : t);
    }
    case "Replace": {
      const re = patternOf(node), content = String(node.content ?? "");
      return (t) => t.replace(re, () => content);
    }
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD": {
      const form = node.type;
      return (t) => t.normalize(form);
    }
    case "Lowercase":
      return (t) => t.toLowerCase();
    default:
      return fail(`normalizer type "${node.type}" is not supported`);
  }
}

/** Pieces → pieces; `first` is true for the text before any special token. */
type PreTokenize = (pieces: string[], first: boolean) => string[];

interface PreInfo {
  run: PreTokenize;
  byteLevel: boolean;
}

function splitBy(text: string, re: RegExp, behavior: string, invert: boolean): string[] {
  // Isolated pieces first: [gap, match, gap, match, ...] with flags saying which are matches.
  const pieces: { s: string; hit: boolean }[] = [];
  let last = 0;
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    if (m.index > last) pieces.push({ s: text.slice(last, m.index), hit: invert });
    pieces.push({ s: m[0], hit: !invert });
    last = m.index + m[0].length;
  }
  if (last < text.length) pieces.push({ s: text.slice(last), hit: invert });
  const out: string[] = [];
  switch (behavior) {
    case "Isolated":
      return pieces.map((p) => p.s);
    case "Removed":
      return pieces.filter((p) => !p.hit).map((p) => p.s);
    case "MergedWithPrevious":
      for (const p of pieces) {
        if (p.hit && out.length) out[out.length - 1] += p.s;
        else out.push(p.s);
      }
      return out;
    case "MergedWithNext": {
      let carry = "";
      for (const p of pieces) {
        if (p.hit) carry += p.s;
        else {
          out.push(carry + p.s);
          carry = "";
        }
      }
      if (carry) out.push(carry);
      return out;
    }
    case "Contiguous": {
      let prevHit: boolean | undefined;
      for (const p of pieces) {
        if (p.hit && prevHit === true) out[out.length - 1] += p.s;
        else out.push(p.s);
        prevHit = p.hit;
      }
      return out;
    }
    default:
      return fail(`Split behavior "${behavior}" is not supported`);
  }
}

function buildPreTokenizer(node: HfComponent | null | undefined): PreInfo {
  if (!node) return { run: (p) => p, byteLevel: false };
  switch (node.type) {
    case "Sequence": {
      const steps = children(node, "pretokenizers").map(buildPreTokenizer);
      return {
        run: (p, first) => steps.reduce((acc, s) => s.run(acc, first), p),
        byteLevel: steps.some((s) => s.byteLevel),
      };
    }
    case "ByteLevel": {
      const prefix = node.add_prefix_space === true;
      const re = node.use_regex === false ? undefined : compilePattern(GPT2_PATTERN);
      return {
        byteLevel: true,
        run: (pieces, first) =>
          pieces.flatMap((t, i) => {
            if (prefix && first && i === 0 && !t.startsWith(" ")) t = " " + t;
            return re ? splitIsolated(t, re) : [t]; // the tokenizer maps bytes per word
          }),
      };
    }
    case "Metaspace": {
      const rep = String(node.replacement ?? SPM_SPACE);
      // Older files say add_prefix_space (always); newer ones prepend_scheme.
      const scheme = typeof node.prepend_scheme === "string"
        ? node.prepend_scheme
        : node.add_prefix_space === false
        ? "never"
        : "always";
      const split = node.split !== false;
      return {
        byteLevel: false,
        run: (pieces, first) =>
          pieces.flatMap((t, i) => {
            t = t.replaceAll(" ", rep);
            const prepend = scheme === "always" || (scheme === "first" && first && i === 0);
            if (prepend && !t.startsWith(rep)) t = rep + t;
            if (!split) return [t];
            const words: string[] = [];
            let start = 0;
            for (let j = 1; j < t.length; j++) {
              if (t.startsWith(rep, j)) {
                words.push(t.slice(start, j));
                start = j;
              }
            }
            if (start < t.length) words.push(t.slice(start));
            return words;
          }),
      };
    }
    case "Split": {
      const re = patternOf(node);
      const behavior = String(node.behavior ?? "Isolated");
      const invert = node.invert === true;
      return { byteLevel: false, run: (p) => p.flatMap((t) => splitBy(t, re, behavior, invert)) };
    }
    case "Digits": {
      const re = node.individual_digits === true ? /\p{N}/gu : /\p{N}+/gu;
      return { byteLevel: false, run: (p) => p.flatMap((t) => splitBy(t, re, "Isolated", false)) };
    }
    default:
      return fail(`pre_tokenizer type "${node.type}" is not supported`);
  }
}

function decoderInfo(node: HfComponent | null | undefined) {
  const info = { byteLevel: false, spaceSymbol: undefined as string | undefined, strip: false };
  const visit = (n: HfComponent) => {
    switch (n.type) {
      case "Sequence":
        children(n, "decoders").forEach(visit);
        break;
      case "ByteLevel":
        info.byteLevel = true;
        break;
      case "Metaspace":
        info.spaceSymbol = String(n.replacement ?? SPM_SPACE);
        info.strip = n.prepend_scheme !== "never" && n.add_prefix_space !== false;
        break;
      case "Replace": {
        const p = n.pattern as { String?: string } | undefined;
        if (p?.String !== undefined && n.content === " ") info.spaceSymbol = p.String;
        break;
      }
      case "Strip":
        if (n.content === " " && Number(n.start) > 0) info.strip = true;
        break;
    }
  };
  if (node) visit(node);
  return info;
}

/** bos/eos from a TemplateProcessing post-processor ("<s> $A" → BOS <s>, added by default). */
function templateSpecials(node: HfComponent | null | undefined): { bos?: string; eos?: string } {
  if (!node) return {};
  if (node.type === "Sequence") {
    return Object.assign({}, ...children(node, "processors").map(templateSpecials));
  }
  if (node.type !== "TemplateProcessing" || !Array.isArray(node.single)) return {};
  type Item = { SpecialToken?: { id: string }; Sequence?: unknown };
  const single = node.single as Item[];
  const out: { bos?: string; eos?: string } = {};
  if (single[0]?.SpecialToken) out.bos = single[0].SpecialToken.id;
  const last = single[single.length - 1];
  if (single.length > 1 && last?.SpecialToken) out.eos = last.SpecialToken.id;
  return out;
}

/** A BPE tokenizer from tokenizer.json (the text or the parsed object). */
export function loadHfTokenizerJson(
  json: string | HfTokenizerJson,
  options: HfLoadOptions = {},
): BytePairTokenizer {
  const spec: HfTokenizerJson = typeof json === "string" ? JSON.parse(json) : json;
  const model = spec.model;
  if (!model || typeof model.vocab !== "object") fail("no model.vocab");
  const type = model.type ?? (model.merges ? "BPE" : "unknown");
  if (type !== "BPE") fail(`model type "${type}" is not supported (supported: BPE)`);
  if (model.continuing_subword_prefix || model.end_of_word_suffix) {
    fail("BPE with continuing_subword_prefix/end_of_word_suffix is not supported");
  }

  const added = spec.added_tokens ?? [];
  let size = 0;
  for (const id of Object.values(model.vocab)) size = Math.max(size, id + 1);
  for (const t of added) size = Math.max(size, t.id + 1);
  const tokens: string[] = new Array(size).fill("");
  for (const [t, id] of Object.entries(model.vocab)) tokens[id] = t;
  for (const t of added) tokens[t.id] = t.content;
  // HF looks up model.vocab; added tokens are matched in the raw text before the model runs.
  const ids = new Map<string, number>(Object.entries(model.vocab));

  const byName = (t: string | undefined) => {
    if (t === undefined) return -1;
    const id = ids.get(t) ?? added.find((a) => a.content === t)?.id;
    return id ?? -1;
  };
  const firstOf = (names: string[]) => names.map(byName).find((id) => id >= 0) ?? -1;
  const template = templateSpecials(spec.post_processor);
  const bosId = options.bosToken !== undefined
    ? byName(options.bosToken)
    : template.bos !== undefined
    ? byName(template.bos)
    : firstOf(["<s>", "<|begin_of_text|>", "<|startoftext|>"]);
  const eosId = options.eosToken !== undefined
    ? byName(options.eosToken)
    : template.eos !== undefined
    ? byName(template.eos)
    : firstOf(["</s>", "<|end_of_text|>", "<|endoftext|>"]);
  if (options.bosToken !== undefined && bosId < 0) {
    fail(`BOS token "${options.bosToken}" not found`);
  }
  if (options.eosToken !== undefined && eosId < 0) {
    fail(`EOS token "${options.eosToken}" not found`);
  }

  const normalize = buildNormalizer(spec.normalizer);
  const pre = buildPreTokenizer(spec.pre_tokenizer);
  const dec = decoderInfo(spec.decoder);
  const special = added.filter((t) => t.special).map((t): [string, number] => [t.content, t.id]);
  const unk = model.unk_token ?? undefined;

  return new BytePairTokenizer({
    tokens,
    ids,
    merges: (model.merges ?? []).map((m) => (typeof m === "string" ? splitMerge(m) : m)),
    byteLevel: pre.byteLevel,
    byteLevelDecode: dec.byteLevel,
    byteFallback: model.byte_fallback === true,
    unkId: byName(unk),
    fuseUnk: model.fuse_unk === true,
    ignoreMerges: model.ignore_merges === true,
    preTokenize: (text, first) => pre.run([normalize(text)], first).filter((w) => w.length > 0),
    bosId,
    eosId,
    addBos: options.addBos ?? (template.bos !== undefined && bosId >= 0),
    addEos: options.addEos ?? (template.eos !== undefined && eosId >= 0),
    userDefined: added.filter((t) => !t.special).map((t): [string, number] => [t.content, t.id]),
    control: special,
    hidden: new Set(special.map(([, id]) => id)),
    spaceSymbol: dec.spaceSymbol,
    stripLeadingSpace: dec.strip,
  });
}

/**
 * The Hugging Face tokenizer.json of a llama2.c tokenizer, laid out as transformers converts a
 * SentencePiece BPE model (Llama 2, legacy): ▁ for spaces, merges derived from the vocabulary and
 * ordered by the score of the merged piece (best first), byte fallback, <s> added by the template.
 */
export function llama2cToHfTokenizerJson(tokenizer: Llama2cTokenizer): HfTokenizerJson {
  const specials = ["<unk>", "<s>", "</s>"];
  const tokens = tokenizer.pieces.map((
    p,
    i,
  ) => (i < 3 ? specials[i] : p.replaceAll(" ", SPM_SPACE)));
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => {
    if (t in vocab) {
      throw new Error(`llama2.c tokenizer: pieces ${vocab[t]} and ${i} both become "${t}"`);
    }
    vocab[t] = i;
  });
  // transformers' SentencePieceExtractor: every split of a piece into two pieces is a merge;
  // within a piece by (left id, right id), then all merges by the piece's score, stable.
  const merges: { left: string; right: string; score: number }[] = [];
  tokens.forEach((piece, i) => {
    const local: { left: string; right: string; score: number }[] = [];
    for (let k = 1; k < piece.length; k++) {
      const left = piece.slice(0, k), right = piece.slice(k);
      if (left in vocab && right in vocab) local.push({ left, right, score: tokenizer.scores[i] });
    }
    local.sort((a, b) => vocab[a.left] - vocab[b.left] || vocab[a.right] - vocab[b.right]);
    merges.push(...local);
  });
  merges.sort((a, b) => b.score - a.score);
  const special = (id: number) => ({
    id,
    content: tokens[id],
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0), special(1), special(2)],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: SPM_SPACE },
        { type: "Replace", pattern: { String: " " }, content: SPM_SPACE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPM_SPACE }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: merges.map((m) => `${m.left} ${m.right}`),
    },
  };
}
