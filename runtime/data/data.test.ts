import { assertEquals, assertThrows, rng } from "../../tests/util.ts";
import { examplesToText, parseData, splitText } from "./text.ts";
import { evalWindows, sampleBatch } from "./windows.ts";

Deno.test("data files: text, jsonl and tsv; malformed lines named", () => {
  assertEquals(parseData("a.txt", "hello\nworld"), [{ text: "hello\nworld" }]);
  assertEquals(parseData("a.jsonl", '{"text":"a"}\n\n{"text":"b","label":1}\n'), [
    { text: "a" },
    { text: "b", label: "1" },
  ]);
  assertEquals(parseData("d.tsv", "sentence\tlabel\ngood film \t1\nbad\t0"), [
    { text: "good film ", label: "1" },
    { text: "bad", label: "0" },
  ]);
  assertEquals(examplesToText(parseData("d.tsv", "a\t1\nb\t0")), "a\nb");
  assertThrows(() => parseData("x.jsonl", '{"text":1}'), /x.jsonl:1: each line needs/);
  assertThrows(() => parseData("x.jsonl", "{"), /x.jsonl:1: not valid JSON/);
  assertThrows(() => parseData("x.tsv", "a\t1\nno tab"), /x.tsv:2: expected/);
});

Deno.test("held-out split cuts at a line and keeps every character", () => {
  const text = Array.from({ length: 100 }, (_, i) => `line ${i}`).join("\n");
  const { train, eval: held } = splitText(text, 0.1);
  assertEquals(train + held, text);
  assertEquals(train.endsWith("\n"), true);
});

Deno.test("eval windows overlap by one and predict every token once", () => {
  const ids = Array.from({ length: 10 }, (_, i) => i);
  const w = evalWindows(ids, 4);
  assertEquals(w.map((x) => Array.from(x)), [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8], [8, 9]]);
  const predicted = w.reduce((n, x) => n + x.length - 1, 0);
  assertEquals(predicted, ids.length - 1);
  // A last window of one token predicts nothing and is dropped.
  assertEquals(evalWindows([0, 1, 2, 3, 4], 4).length, 1);
  assertThrows(() => evalWindows(ids, 0), /≥ 1/);
});

Deno.test("batches are shifted windows, fixed by the seed", () => {
  const ids = Array.from({ length: 50 }, (_, i) => i);
  const a = sampleBatch(ids, 3, 8, rng(7)), b = sampleBatch(ids, 3, 8, rng(7));
  assertEquals(Array.from(a.inputs), Array.from(b.inputs));
  for (let i = 0; i < a.inputs.length; i++) assertEquals(a.targets[i], a.inputs[i] + 1);
  assertThrows(() => sampleBatch(ids.slice(0, 5), 1, 8, rng(1)), /lower --seq-len/);
});
