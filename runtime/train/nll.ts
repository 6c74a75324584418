/**
 * Held-out NLL exactly as DLORA.md §7: encode the whole text once (BOS + the tokenizer's usual
 * prefix), cut it into windows of T+1 tokens overlapping by one (`evalWindows`), and average the
 * NLL over every predicted token. For speed the windows go through the model several at a time
 * as one (B,T) batch; the last partial window and the unused rows of the last batch are padded
 * with ignored targets (-1). Causal attention keeps padding after a position from changing it.
 */
import { evalWindows } from "../data/windows.ts";
import type { LoraHooks } from "../model/hooks.ts";
import type { LlamaModel } from "../model/llama.ts";
import { LocalLora } from "../model/lora.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";

export interface NllOptions {
  /** LoRA applied during the forward (e.g. a LocalLora); none = the base model. */
  hooks?: LoraHooks;
  /** Keep only the first maxTokens encoded tokens (BOS included) before cutting windows. */
  maxTokens?: number;
  /** Windows per forward; default from the vocabulary so the (B·T,V) logits stay ≤ 32 MB. */
  windowsPerBatch?: number;
  /** Called after each batch with (windows done, windows in all). */
  onProgress?: (done: number, total: number) => void;
}

export interface NllResult {
  /** Predicted tokens (encoded tokens − 1). */
  tokens: number;
  /** Mean NLL over them, nats/token (NaN when the text has fewer than 2 tokens). */
  mean_nll: number;
}

/** §7 held-out NLL of `text`, windows of seqLen inputs. */
export function heldOutNll(
  model: LlamaModel,
  tokenizer: Tokenizer,
  text: string,
  seqLen = 256,
  opts: NllOptions = {},
): Promise<NllResult> {
  let ids = tokenizer.encode(text, { bos: true });
  if (opts.maxTokens !== undefined) ids = ids.slice(0, opts.maxTokens);
  return nllOfIds(model, ids, seqLen, opts);
}

/** The same over already encoded ids. */
export async function nllOfIds(
  model: LlamaModel,
  ids: ArrayLike<number>,
  seqLen: number,
  opts: NllOptions = {},
): Promise<NllResult> {
  const windows = evalWindows(ids, seqLen), T = seqLen, V = model.config.vocabSize;
  if (windows.length === 0) return { tokens: 0, mean_nll: NaN };
  const perBatch = opts.windowsPerBatch ??
    Math.max(1, Math.floor(Math.min(4096, (32 << 20) / (4 * V)) / T));
  const B = Math.min(perBatch, windows.length);
  const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
  // Dropout is a training-time thing; a LocalLora in training mode is evaluated without it.
  const lora = opts.hooks instanceof LocalLora ? opts.hooks : null;
  const wasTraining = lora?.training ?? false;
  if (lora) lora.training = false;
  let sum = 0, count = 0;
  try {
    for (let first = 0; first < windows.length; first += B) {
      inputs.fill(0);
      targets.fill(-1);
      for (let b = 0; b < B && first + b < windows.length; b++) {
        const w = windows[first + b];
        for (let t = 0; t + 1 < w.length; t++) {
          inputs[b * T + t] = w[t];
          targets[b * T + t] = w[t + 1];
        }
      }
      const r = await model.forwardLoss(inputs, targets, { B, T }, { hooks: opts.hooks });
      for (let i = 0; i < targets.length; i++) if (targets[i] !== -1) sum += r.losses[i];
      count += r.count;
      opts.onProgress?.(Math.min(first + B, windows.length), windows.length);
    }
  } finally {
    if (lora) lora.training = wasTraining;
  }
  return { tokens: count, mean_nll: count > 0 ? sum / count : NaN };
}
