/**
 * What `eval`, `generate` and `train` share: the model (and its tokenizer) loaded from the
 * flags, uploaded into a kernel instance with --threads workers, optionally with a PEFT adapter
 * directory applied.
 */
import { Kernels } from "../../kernels/mod.ts";
import { readPeftAdapter } from "../adapters/peft.ts";
import { examplesToText, parseData } from "../data/text.ts";
import { denoDirectory, isDirectory } from "../formats/io.ts";
import { type LoadedModel, loadModel } from "../load.ts";
import { LlamaModel } from "../model/llama.ts";
import type { LocalLora } from "../model/lora.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { loraFromAdapter } from "../train/adapter.ts";
import { type Flags, optionalInt, requireString, UsageError } from "./args.ts";

export interface Engine {
  loaded: LoadedModel;
  tokenizer: Tokenizer;
  k: Kernels;
  model: LlamaModel;
  /** The --adapter's modules, or null. */
  lora: LocalLora | null;
  adapterBaseModel: string | null;
  close(): void;
}

/** --threads, default every core the host reports. */
export function threadsFlag(flags: Flags, command: string): number {
  return optionalInt(flags, "threads", navigator.hardwareConcurrency || 1, command);
}

/** Loads --model (with --tokenizer) and --adapter into a kernel instance. */
export async function openEngine(flags: Flags, command: string): Promise<Engine> {
  const modelArg = requireString(flags, "model", command);
  const threads = threadsFlag(flags, command);
  const adapterDir = flags.adapter;
  if (adapterDir !== undefined && (typeof adapterDir !== "string" || adapterDir === "")) {
    throw new UsageError(`${command}: --adapter needs a directory`);
  }
  if (adapterDir !== undefined && !(await isDirectory(adapterDir))) {
    throw new Error(
      `--adapter ${adapterDir}: not a directory (expected adapter_config.json and ` +
        `adapter_model.safetensors, as \`train --out\` writes them)`,
    );
  }
  const loaded = await loadModel(modelArg, {
    tokenizer: flags.tokenizer as string | undefined,
    requireTokenizer: true,
  });
  const adapter = adapterDir === undefined
    ? null
    : await readPeftAdapter(denoDirectory(adapterDir), loaded.weights.config);
  const k = await Kernels.load({ threads });
  const model = new LlamaModel(k, loaded.weights);
  let lora: LocalLora | null = null;
  try {
    if (adapter) lora = loraFromAdapter(k, loaded.weights.config, adapter);
  } catch (e) {
    model.free();
    k.close();
    throw e;
  }
  return {
    loaded,
    tokenizer: loaded.tokenizer!,
    k,
    model,
    lora,
    adapterBaseModel: adapter ? adapter.baseModel : null,
    close() {
      lora?.free();
      model.free();
      k.close();
    },
  };
}

/** A data file (plain text, .jsonl or .tsv) as one text, the way train and eval read it. */
export async function readDataText(path: string, flag: string): Promise<string> {
  let contents: string;
  try {
    contents = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`--${flag} ${path}: cannot read (${(e as Error).message})`);
  }
  const text = examplesToText(parseData(path, contents));
  if (text.length === 0) throw new Error(`--${flag} ${path}: the file holds no text`);
  return text;
}
