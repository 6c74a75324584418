import { assert, assertEquals, rng } from "../../tests/util.ts";
import {
  bf16BitsToF32,
  decodeBf16,
  decodeF16,
  decodeF32,
  encodeBf16,
  encodeF16,
  encodeF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "./half.ts";

Deno.test("f16: every bit pattern widens exactly and narrows back to itself", () => {
  const native = typeof Float16Array === "function" ? new Float16Array(1) : null;
  const nativeBits = native ? new Uint16Array(native.buffer) : null;
  for (let h = 0; h < 65536; h++) {
    const x = f16BitsToF32(h);
    if (native && nativeBits) {
      nativeBits[0] = h;
      assert(Object.is(x, native[0]) || (isNaN(x) && isNaN(native[0])), `bits ${h}`);
    }
    if (isNaN(x)) continue;
    assertEquals(f32ToF16Bits(x), h, `h=${h}`);
  }
});

Deno.test("f16: narrowing rounds to nearest even like Math.f16round", () => {
  const f16round = (Math as unknown as { f16round?: (x: number) => number }).f16round;
  const r = rng(7);
  const f = new Float32Array(1), bits = new Uint32Array(f.buffer);
  const cases = [65504, 65519.99, 65520, 1e-8, 2 ** -25, 2 ** -25 * 1.0001, 2 ** -24 * 1.5, -0];
  for (let i = 0; i < 200000; i++) {
    bits[0] = (r() * 2 ** 32) >>> 0;
    cases.push(f[0]);
  }
  for (const x of cases) {
    if (isNaN(x)) continue;
    const got = f16BitsToF32(f32ToF16Bits(x));
    if (f16round) {
      assert(Object.is(got, f16round(x)), `x=${x}: got ${got}, expected ${f16round(x)}`);
    } else {
      assert(Math.abs(got - x) <= Math.abs(x) * 2 ** -11 || !isFinite(got), `x=${x}`);
    }
  }
  assert(isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  assertEquals(f32ToF16Bits(Infinity), 0x7c00);
  assertEquals(f32ToF16Bits(-Infinity), 0xfc00);
});

Deno.test("bf16: round to nearest even, exact widening", () => {
  const f = new Float32Array(1), bits = new Uint32Array(f.buffer);
  // Ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7; even mantissa wins (1).
  assertEquals(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8)), 1);
  assertEquals(bf16BitsToF32(f32ToBf16Bits(1 + 3 * 2 ** -8)), 1 + 2 ** -6);
  assertEquals(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20)), 1 + 2 ** -7);
  assert(isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
  assertEquals(bf16BitsToF32(f32ToBf16Bits(3.4e38)), Infinity);
  for (let h = 0; h < 65536; h++) {
    const x = bf16BitsToF32(h);
    bits[0] = h << 16;
    assert(Object.is(x, f[0]) || isNaN(x));
    if (!isNaN(x)) assertEquals(f32ToBf16Bits(x), h);
  }
});

Deno.test("array codecs read unaligned little-endian bytes", () => {
  const values = new Float32Array([0, 1, -2.5, 65504, 2 ** -24, 0.333251953125]);
  for (const [enc, dec] of [[encodeF16, decodeF16], [encodeBf16, decodeBf16]] as const) {
    const bytes = enc(values);
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const back = dec(shifted.subarray(1), values.length);
    for (let i = 0; i < values.length; i++) {
      const expected = enc === encodeF16
        ? f16BitsToF32(f32ToF16Bits(values[i]))
        : bf16BitsToF32(f32ToBf16Bits(values[i]));
      assertEquals(back[i], expected);
    }
  }
  const raw = encodeF32(values), shifted = new Uint8Array(raw.length + 3);
  shifted.set(raw, 3);
  assertEquals(Array.from(decodeF32(shifted.subarray(3))), Array.from(values));
});
