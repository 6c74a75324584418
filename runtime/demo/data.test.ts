import { assert, assertEquals, assertRejects } from "../../tests/util.ts";
import { DEMO_SOURCES, readSource, resolveDataset, splitFold } from "./data.ts";

const TEXT = Array.from({ length: 200 }, (_, i) => `line ${i} ${"x".repeat(i % 17)}`).join("\n") +
  "\n";

Deno.test("splitFold: train and held-out share no line and cover the text; folds differ", () => {
  const seen: string[] = [];
  for (let fold = 0; fold < 3; fold++) {
    const { train, heldOut } = splitFold(TEXT, { heldOut: 0.1, fold });
    assertEquals(train.length + heldOut.length, TEXT.length, `fold ${fold} covers the text`);
    const trainLines = new Set(train.split("\n").filter((l) => l));
    const heldLines = heldOut.split("\n").filter((l) => l);
    assert(heldLines.length > 10, `fold ${fold} holds out ${heldLines.length} lines`);
    assert(heldLines.every((l) => !trainLines.has(l)), `fold ${fold}: a held-out line in train`);
    assert(!seen.includes(heldOut), `fold ${fold} differs from the earlier folds`);
    seen.push(heldOut);
  }
  // Fold 0 is the end of the text.
  assert(TEXT.endsWith(splitFold(TEXT, { heldOut: 0.1, fold: 0 }).heldOut));
});

Deno.test("splitFold: maxChars bounds the text at a line boundary", () => {
  const { train, heldOut } = splitFold(TEXT, { heldOut: 0.2, fold: 0, maxChars: 500 });
  const used = train + heldOut;
  assert(used.length <= 500 && used.length > 400, `used ${used.length}`);
  assert(used.endsWith("\n") && TEXT.startsWith(used));
});

Deno.test("resolveDataset: finds the shared data sets; a missing one names where it looked", async () => {
  for (const s of DEMO_SOURCES) {
    const path = await resolveDataset(s.file);
    assert((await Deno.stat(path)).isFile, path);
  }
  const sst = await readSource(DEMO_SOURCES[2]);
  assertEquals(
    sst.split("\n").length,
    DEMO_SOURCES[2].lines,
    "SST-2: the first lines, labels dropped",
  );
  assert(!sst.includes("\t"), "no label column");
  const e = await assertRejects(() => resolveDataset("no/such-file.txt"), /not found/);
  assert(e.message.includes("datasets"), e.message);
});
