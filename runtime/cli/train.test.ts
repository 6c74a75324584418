import { assert, assertClose, assertEquals } from "../../tests/util.ts";
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from "../adapters/peft.ts";
import { splitText } from "../data/text.ts";
import { parseSafetensors } from "../formats/safetensors.ts";
import { runCli } from "./testing.ts";

const SHAKESPEARE = new URL("../../../shared/datasets/tinyshakespeare.txt", import.meta.url);

Deno.test("train → PEFT adapter → eval and generate --adapter read it back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const data = (await Deno.readTextFile(SHAKESPEARE)).slice(0, 60_000);
    await Deno.writeTextFile(`${dir}/data.txt`, data);
    await Deno.writeTextFile(`${dir}/held.txt`, splitText(data, 0.2).eval);
    const common = ["--model", "stories260K", "--threads", "1", "--json"];
    const trained = await runCli([
      "train",
      ...common,
      ...["--data", `${dir}/data.txt`, "--out", `${dir}/adapter`, "--held-out", "0.2"],
      ...["--steps", "8", "--rank", "4", "--alpha", "8", "--targets", "q,v,down"],
      ...["--lr", "1e-2", "--batch", "4", "--seq-len", "64", "--warmup", "1", "--seed", "2"],
    ]);
    assertEquals(trained.code, 0, trained.stderr);
    const t = trained.json!;
    assertEquals((t.losses as number[]).length, 8);
    assertEquals(t.adapter, `${dir}/adapter`);
    assert((t.tokens_per_s as number) > 0);
    const before = t.nll_before as number, after = t.nll_after as number;
    assert(after < before - 0.2, `held-out NLL ${before} → ${after}`);

    // Exactly PEFT's files and names.
    const config = JSON.parse(await Deno.readTextFile(`${dir}/adapter/${ADAPTER_CONFIG}`));
    assertEquals(config.peft_type, "LORA");
    assertEquals([config.r, config.lora_alpha], [4, 8]);
    assertEquals(config.target_modules, ["q_proj", "v_proj", "down_proj"]);
    assertEquals(config.base_model_name_or_path, "stories260K");
    const st = parseSafetensors(await Deno.readFile(`${dir}/adapter/${ADAPTER_WEIGHTS}`));
    const names = [...st.tensors.keys()];
    assertEquals(names.length, 5 * 3 * 2);
    for (let l = 0; l < 5; l++) {
      for (const m of ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]) {
        for (const ab of ["A", "B"]) {
          const name = `base_model.model.model.layers.${l}.${m}.lora_${ab}.weight`;
          assert(st.tensors.has(name), `missing ${name}`);
        }
      }
    }
    assertEquals(
      st.tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")!
        .shape,
      [4, 64],
    );
    assertEquals(st.metadata.dlora_active_modules.split(",").length, 15);

    // eval over the held-out text: the same NLLs train reported, with and without the adapter.
    const evalArgs = ["eval", ...common, "--text", `${dir}/held.txt`];
    const withAdapter = await runCli([...evalArgs, "--adapter", `${dir}/adapter`]);
    const base = await runCli(evalArgs);
    assertEquals(withAdapter.code, 0, withAdapter.stderr);
    assertEquals(base.code, 0, base.stderr);
    assertEquals(withAdapter.json!.tokens, t.held_out_tokens);
    assertClose([withAdapter.json!.mean_nll as number], [after], { rtol: 1e-6 });
    assertClose([base.json!.mean_nll as number], [before], { rtol: 1e-6 });

    // generate: greedy text with and without the adapter (deterministic, and not the same).
    const genArgs = ["generate", ...common, "--prompt", "ROMEO:", "--max-tokens", "24"];
    const g1 = await runCli([...genArgs, "--adapter", `${dir}/adapter`]);
    const g2 = await runCli([...genArgs, "--adapter", `${dir}/adapter`]);
    const g0 = await runCli(genArgs);
    for (const g of [g1, g0]) {
      assertEquals(g.code, 0, g.stderr);
      assertEquals(typeof g.json!.text, "string");
      assert(Array.isArray(g.json!.ids) && (g.json!.ids as number[])[0] === 1, "BOS first");
    }
    assertEquals(g1.json!.ids, g2.json!.ids);
    assert(JSON.stringify(g1.json!.ids) !== JSON.stringify(g0.json!.ids), "adapter changes text");

    // Without --json the text streams to stdout, prompt first.
    const plain = await runCli(genArgs.filter((a) => a !== "--json"));
    assertEquals(plain.code, 0, plain.stderr);
    assertEquals(plain.stdout, `ROMEO:${g0.json!.text}\n`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train / eval / generate: usage errors exit 2 with a message, bad files exit 1", async () => {
  const cases: [string[], number, RegExp][] = [
    [["train", "--model", "stories260K", "--out", "x"], 2, /train: --data is required/],
    [
      ["train", "--model", "stories260K", "--data", "d.txt", "--out", "x", "--targets", "q,qq"],
      2,
      /--targets: unknown LoRA target "qq"/,
    ],
    [
      ["train", "--model", "stories260K", "--data", "d", "--out", "x", "--schedule", "step"],
      2,
      /--schedule must be one of cosine, linear, constant/,
    ],
    [["train", "--model", "stories260K", "--data", "d", "--out", "x", "--steps", "0"], 2, /≥ 1/],
    [["eval", "--model", "stories260K"], 2, /eval: --text is required/],
    [["generate", "--model", "stories260K", "--top-p", "2"], 2, /--top-p must lie in/],
    [["bench"], 2, /bench step\|kernels\|split/],
    [["train", "--model", "stories260K", "--data", "/no/such.txt", "--out", "x"], 1, /cannot read/],
    [
      ["eval", "--model", "stories260K", "--text", "/dev/null", "--adapter", "/no/such"],
      1,
      /holds no text|not a directory/,
    ],
  ];
  for (const [args, code, message] of cases) {
    const r = await runCli(args);
    assertEquals(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert(message.test(r.stderr), `${args.join(" ")}: ${r.stderr}`);
  }
});
