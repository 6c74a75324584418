import { assert, assertEquals, assertThrows } from "../../tests/util.ts";
import { f16BitsToF32, f32ToF16Bits } from "./half.ts";
import { parseSafetensors, tensorToF32, writeSafetensors } from "./safetensors.ts";

/** A safetensors file from a raw header object and data bytes (for malformed cases). */
function rawFile(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("safetensors round trip: F32, F16, BF16, raw bytes, metadata, 8-byte aligned data", () => {
  const a = Float32Array.from({ length: 6 }, (_, i) => i * 0.5 - 1);
  const bytes = writeSafetensors(
    {
      a: { dtype: "F32", shape: [2, 3], data: a },
      h: { dtype: "F16", shape: [6], data: a },
      b: { dtype: "BF16", shape: [3, 2], data: a },
      ids: { dtype: "I32", shape: [2], data: new Uint8Array([1, 0, 0, 0, 255, 255, 255, 255]) },
      empty: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    },
    { format: "pt" },
  );
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals(headerLen % 8, 0);
  const f = parseSafetensors(bytes, "t.safetensors");
  assertEquals(f.metadata, { format: "pt" });
  assertEquals([...f.tensors.keys()], ["a", "h", "b", "ids", "empty"]);
  assertEquals(f.tensors.get("b")!.shape, [3, 2]);
  for (const k of ["a", "h", "b"]) {
    assertEquals(Array.from(tensorToF32(f.tensors.get(k)!)), Array.from(a), k);
  }
  assertEquals(f.tensors.get("ids")!.dtype, "I32");
  assertEquals(tensorToF32(f.tensors.get("empty")!).length, 0);
  assertThrows(
    () => tensorToF32(f.tensors.get("ids")!, "ids", "t.safetensors"),
    /t\.safetensors: tensor ids has dtype I32; weights must be F32, F16, BF16 or F64/,
  );
});

Deno.test("F16 and BF16 load exactly for representable values, round to nearest otherwise", () => {
  const exact = Float32Array.from([0, -0, 1, -2, 0.5, 65280, 2 ** -14, 1.5, -3.25, 1024]);
  const f = parseSafetensors(writeSafetensors({
    h: { dtype: "F16", shape: [exact.length], data: exact },
    b: { dtype: "BF16", shape: [exact.length], data: exact },
  }));
  assertEquals(Array.from(tensorToF32(f.tensors.get("h")!)), Array.from(exact));
  assertEquals(Array.from(tensorToF32(f.tensors.get("b")!)), Array.from(exact));
  const third = Float32Array.of(1 / 3);
  const g = parseSafetensors(writeSafetensors({ h: { dtype: "F16", shape: [1], data: third } }));
  assertEquals(tensorToF32(g.tensors.get("h")!)[0], f16BitsToF32(f32ToF16Bits(1 / 3)));
});

Deno.test("bad safetensors headers fail naming the file, tensor and problem", () => {
  const d8 = new Uint8Array(8);
  const t = (dtype: string, shape: number[], offsets: number[]) => ({
    dtype,
    shape,
    data_offsets: offsets,
  });
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  const past = new Uint8Array(16);
  new DataView(past.buffer).setBigUint64(0, 100n, true);
  const cases: [Uint8Array, RegExp][] = [
    [
      new Uint8Array(5),
      /^m\.safetensors: truncated: 5 bytes, no room for the 8-byte header length/,
    ],
    [huge, /header length 1099511627776 exceeds the 100000000-byte limit/],
    [past, /truncated: header length 100 runs past the end of the 16-byte file/],
    [rawFile(null, d8, "{not json"), /header is not valid UTF-8 JSON/],
    [rawFile(null, d8, "[1,2]"), /header is not a JSON object/],
    [rawFile({ w: t("F12", [2], [0, 8]) }, d8), /tensor w: unknown dtype "F12"/],
    [
      rawFile({ w: t("F32", [3], [0, 8]) }, d8),
      /tensor w: shape \[3\] of F32 needs 12 bytes, data_offsets span 8/,
    ],
    [rawFile({ w: t("F32", [-1], [0, 8]) }, d8), /tensor w: shape \[-1\] is not a list of sizes/],
    [
      rawFile({ w: t("F32", [2], [8, 0]) }, d8),
      /tensor w: data_offsets \[8,0\] is not \[begin, end\]/,
    ],
    [
      rawFile({ w: t("F32", [4], [0, 16]) }, d8),
      /tensor w: data_offsets \[0, 16\] run past the 8 data bytes/,
    ],
    [
      rawFile({ a: t("F32", [2], [0, 8]), b: t("F16", [2], [4, 8]) }, d8),
      /m\.safetensors: tensors a and b overlap/,
    ],
    [
      rawFile({ a: t("F32", [1], [4, 8]) }, d8),
      /hole in the data: bytes 0\.\.4 belong to no tensor/,
    ],
    [
      rawFile({ a: t("F32", [1], [0, 4]) }, d8),
      /4 bytes after the last tensor belong to no tensor/,
    ],
    [
      rawFile({ __metadata__: { n: 3 }, a: t("F32", [2], [0, 8]) }, d8),
      /__metadata__\.n is not a string/,
    ],
  ];
  for (const [bytes, re] of cases) {
    const e = assertThrows(() => parseSafetensors(bytes, "m.safetensors"), re);
    assert(e.message.startsWith("m.safetensors: "), e.message);
  }
});
