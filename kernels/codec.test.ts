import { Kernels } from "./mod.ts";
import {
  bf16ToF32,
  CodecError,
  dequantizeInt8Rows,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  quantizeInt8Rows,
  topkDecode,
  topkEncode,
  topkEncodeWithFeedback,
  topkMaxBytes,
} from "./codec.ts";
import {
  bf16ToF32BitsRef,
  bitsF32,
  dequantizeInt8RowsRef,
  f16ToF32BitsRef,
  f32Bits,
  f32ToBf16BitsRef,
  f32ToF16BitsRef,
  quantizeInt8RowsRef,
  topkDecodeRef,
  topkEncodeRef,
  topkFeedbackRef,
} from "./reference/codec.ts";
import { assert, assertEquals, assertThrows, randn, rng, testKernels } from "../tests/util.ts";
import type { F32, WasmArray } from "./core.ts";

const SIZES = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4097];

function bitsOf(a: F32): Uint32Array {
  return new Uint32Array(a.data.buffer, a.ptr, a.length);
}

/** First index where a and b differ, as a readable message, or "" when equal. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>, input?: ArrayLike<number>): string {
  if (a.length !== b.length) return `length ${a.length} != ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      const at = input ? ` (input bits 0x${(input[i] >>> 0).toString(16)})` : "";
      return `index ${i}: 0x${a[i].toString(16)} != 0x${b[i].toString(16)}${at}`;
    }
  }
  return "";
}

/** Encodes f32 bit patterns with the kernel and the reference; they must agree bit for bit. */
async function checkHalfEncode(
  bits: Uint32Array,
  kernel: typeof f32ToF16,
  ref: (b: number) => number,
  label: string,
): Promise<Uint16Array> {
  const k = await testKernels();
  const src = k.alloc(bits.length);
  bitsOf(src).set(bits);
  const dst = k.alloc(bits.length, "u16");
  kernel(k, src, dst);
  const got = dst.toArray();
  // Again (the first 2^17) in calls of 7 elements: only the scalar tail code runs.
  const name = kernel === f32ToF16 ? "codecF32ToF16" : "codecF32ToBf16";
  const ns = Math.min(bits.length, 1 << 17);
  for (let i = 0; i < ns; i += 7) {
    k.exports[name](src.ptr + 4 * i, dst.ptr + 2 * i, Math.min(7, ns - i));
  }
  const scalar = dst.data.slice(0, ns);
  src.free();
  dst.free();
  const want = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) want[i] = ref(bits[i]);
  const d = firstDiff(got, want, bits);
  assert(d === "", `${label}: ${d}`);
  const ds = firstDiff(scalar, want.subarray(0, scalar.length), bits);
  assert(ds === "", `${label} (scalar path): ${ds}`);
  return got;
}

function randomBits(n: number, seed: number): Uint32Array {
  const r = rng(seed);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 4294967296);
  return out;
}

/** Random f32 bit patterns with exponents in [lo, hi] (unbiased), random sign and mantissa. */
function randomBitsInRange(n: number, seed: number, lo: number, hi: number): Uint32Array {
  const r = rng(seed);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const e = lo + Math.floor(r() * (hi - lo + 1)) + 127;
    const sign = r() < 0.5 ? 0x80000000 : 0;
    out[i] = (sign | (e << 23) | Math.floor(r() * 0x800000)) >>> 0;
  }
  return out;
}

// ---------------------------------------------------------------------------
// f16

Deno.test("f16 decode: all 65536 bit patterns match the reference bit for bit", async () => {
  const k = await testKernels();
  const src = k.alloc(65536, "u16");
  for (let h = 0; h < 65536; h++) src.data[h] = h;
  const dst = k.alloc(65536);
  f16ToF32(k, src, dst);
  const want = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) want[h] = f16ToF32BitsRef(h);
  const d = firstDiff(bitsOf(dst), want);
  assert(d === "", d);
  src.free();
  dst.free();
});

Deno.test("f16 encode: every f16 round-trips; every midpoint and its f32 neighbours round to nearest even", async () => {
  const finite: number[] = [];
  for (let h = 0; h < 0x7c00; h++) finite.push(f16ToF32BitsRef(h));
  const cases: number[] = [];
  for (let h = 0; h < 0x7c00; h++) {
    const lo = bitsF32(finite[h]);
    const hi = h + 1 < 0x7c00 ? bitsF32(finite[h + 1]) : 65536; // next step past 65504 is Inf
    const mid = f32Bits((lo + hi) / 2); // exact: 12 significant bits
    for (const b of [finite[h], mid - 1, mid, mid + 1]) cases.push(b, (b | 0x80000000) >>> 0);
  }
  await checkHalfEncode(new Uint32Array(cases), f32ToF16, f32ToF16BitsRef, "midpoints");
  // Round trip of every non-NaN f16, through the kernels both ways.
  const k = await testKernels();
  const h16 = k.alloc(65536, "u16");
  for (let h = 0; h < 65536; h++) h16.data[h] = h;
  const f = k.alloc(65536);
  const back = k.alloc(65536, "u16");
  f16ToF32(k, h16, f);
  f32ToF16(k, f, back);
  for (let h = 0; h < 65536; h++) {
    const isNan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    const want = isNan ? h | 0x200 : h; // NaN comes back quiet, payload kept
    if (back.data[h] !== want) {
      throw new Error(`f16 0x${h.toString(16)} came back 0x${back.data[h].toString(16)}`);
    }
  }
  h16.free();
  f.free();
  back.free();
});

Deno.test("f16 encode: 2M random f32 bit patterns match the reference", async () => {
  await checkHalfEncode(randomBits(1 << 20, 11), f32ToF16, f32ToF16BitsRef, "random bits");
  // Exponents around the f16 range: subnormals, normals, overflow.
  await checkHalfEncode(
    randomBitsInRange(1 << 20, 12, -27, 17),
    f32ToF16,
    f32ToF16BitsRef,
    "f16 range",
  );
});

Deno.test("f16 policy: Inf stays Inf, overflow rounds to Inf, NaN becomes a quiet NaN, signed zero kept", async () => {
  const table: [number, number][] = [
    [0x7f800000, 0x7c00], // +Inf
    [0xff800000, 0xfc00], // -Inf
    [f32Bits(65504), 0x7bff],
    [f32Bits(65519.996), 0x7bff], // just below the midpoint to Inf
    [f32Bits(65520), 0x7c00], // the midpoint: ties to even = Inf
    [f32Bits(1e6), 0x7c00],
    [f32Bits(-1e30), 0xfc00],
    [0x7fc00000, 0x7e00], // quiet NaN
    [0x7f800001, 0x7e00], // signalling NaN, low payload: still a NaN, now quiet
    [0xffc02000, 0xfe01], // negative NaN keeps sign and top payload bits
    [0x80000000, 0x8000], // -0
    [f32Bits(2 ** -25), 0x0000], // half the smallest subnormal: ties to even = 0
    [f32Bits(-(2 ** -25) * 1.5), 0x8001],
    [f32Bits(2 ** -14 - 2 ** -25), 0x0400], // rounds up into the normals
  ];
  const got = await checkHalfEncode(
    new Uint32Array(table.map(([b]) => b)),
    f32ToF16,
    f32ToF16BitsRef,
    "policy table",
  );
  assertEquals(Array.from(got), table.map(([, h]) => h));
  const k = await testKernels();
  const h = k.from([0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfd00], undefined, "u16");
  const f = k.alloc(5);
  f16ToF32(k, h, f);
  assertEquals(Array.from(bitsOf(f)), [0x7f800000, 0xff800000, 0x7fc00000, 0x7fc02000, 0xffe00000]);
  h.free();
  f.free();
});

Deno.test("f16 and bf16 round trips over many sizes: exact vs reference, error within half an ulp", async () => {
  const k = await testKernels();
  for (const n of SIZES) {
    for (const scale of [1, 1e-3, 300]) {
      const x = randn(n, 100 + n, scale);
      const src = k.from(x);
      const h = k.alloc(n, "u16");
      const y = k.alloc(n);
      for (
        const [enc, dec, encRef, decRef, rel] of [
          [f32ToF16, f16ToF32, f32ToF16BitsRef, f16ToF32BitsRef, 2 ** -11],
          [f32ToBf16, bf16ToF32, f32ToBf16BitsRef, bf16ToF32BitsRef, 2 ** -8],
        ] as const
      ) {
        enc(k, src, h);
        dec(k, h, y);
        for (let i = 0; i < n; i++) {
          const hb = encRef(f32Bits(x[i]));
          assertEquals(h.data[i], hb, `${enc.name} n=${n} i=${i}`);
          assertEquals(bitsOf(y)[i], decRef(hb), `${dec.name} n=${n} i=${i}`);
          const a = Math.abs(x[i]);
          // relative bound in the normal range; absolute bound (half the smallest step) below it
          const bound = enc === f32ToF16 && a < 2 ** -14 ? 2 ** -25 : rel * a;
          assert(
            Math.abs(y.data[i] - x[i]) <= bound,
            `${enc.name} n=${n}: |${y.data[i]} − ${x[i]}| > ${bound}`,
          );
        }
      }
      src.free();
      h.free();
      y.free();
    }
  }
});

Deno.test("f16/bf16 wrappers reject mismatched lengths and dtypes", async () => {
  const k = await testKernels();
  const x = k.alloc(5), h = k.alloc(4, "u16");
  assertThrows(() => f32ToF16(k, x, h), /dst has 4 elements, expected src.length = 5/);
  assertThrows(() => f32ToBf16(k, x, x as unknown as WasmArray<"u16">), /dst is f32, expected u16/);
  x.free();
  h.free();
});

Deno.test("f16/bf16 encode split over two threads equals one thread", async () => {
  const k = await Kernels.load({ threads: 2 });
  try {
    const n = (1 << 18) + 13;
    const x = k.from(randn(n, 5, 100));
    const a = k.alloc(n, "u16");
    const y = k.alloc(n);
    f32ToF16(k, x, a);
    for (let i = 0; i < n; i += 997) assertEquals(a.data[i], f32ToF16BitsRef(f32Bits(x.data[i])));
    assertEquals(a.data[n - 1], f32ToF16BitsRef(f32Bits(x.data[n - 1])));
    f16ToF32(k, a, y);
    for (let i = 0; i < n; i += 997) assertEquals(bitsOf(y)[i], f16ToF32BitsRef(a.data[i]));
    f32ToBf16(k, x, a);
    bf16ToF32(k, a, y);
    for (let i = n - 20; i < n; i++) {
      assertEquals(bitsOf(y)[i], bf16ToF32BitsRef(f32ToBf16BitsRef(f32Bits(x.data[i]))));
    }
  } finally {
    k.close();
  }
});

// ---------------------------------------------------------------------------
// bf16

Deno.test("bf16 decode of all 65536 patterns is the exact widening; every midpoint rounds to nearest even", async () => {
  const k = await testKernels();
  const src = k.alloc(65536, "u16");
  for (let h = 0; h < 65536; h++) src.data[h] = h;
  const dst = k.alloc(65536);
  bf16ToF32(k, src, dst);
  for (let h = 0; h < 65536; h++) assertEquals(bitsOf(dst)[h], (h << 16) >>> 0);
  src.free();
  dst.free();
  const cases: number[] = [];
  for (let h = 0; h < 0x7f80; h++) {
    const b = h << 16, mid = b + 0x8000;
    for (const c of [b, mid - 1, mid, mid + 1]) cases.push(c, (c | 0x80000000) >>> 0);
  }
  await checkHalfEncode(new Uint32Array(cases), f32ToBf16, f32ToBf16BitsRef, "bf16 midpoints");
  await checkHalfEncode(randomBits(1 << 20, 21), f32ToBf16, f32ToBf16BitsRef, "bf16 random bits");
});

Deno.test("bf16 policy: NaN stays NaN (never Inf), Inf stays Inf, overflow rounds to Inf", async () => {
  const table: [number, number][] = [
    [0x7f800000, 0x7f80],
    [0xff800000, 0xff80],
    [0x7fffffff, 0x7fff], // would carry into Inf with plain rounding
    [0x7f80ffff, 0x7fc0], // signalling NaN whose payload sits in the low half only
    [0xff800001, 0xffc0],
    [0x7fc00000, 0x7fc0],
    [0x7f7fffff, 0x7f80], // largest f32 rounds past the largest bf16
    [0x7f7f7fff, 0x7f7f],
    [0x3f808000, 0x3f80], // tie to even (down)
    [0x3f818000, 0x3f82], // tie to even (up)
    [0x80000000, 0x8000],
  ];
  const got = await checkHalfEncode(
    new Uint32Array(table.map(([b]) => b)),
    f32ToBf16,
    f32ToBf16BitsRef,
    "bf16 table",
  );
  assertEquals(Array.from(got), table.map(([, h]) => h));
});

// ---------------------------------------------------------------------------
// int8 per-row absmax

function int8View(q: WasmArray<"u8">): Int8Array {
  return new Int8Array(q.data.buffer, q.ptr, q.length);
}

Deno.test("int8 quantize/dequantize match the reference over many shapes; error ≤ scale/2", async () => {
  const k = await testKernels();
  const shapes: [number, number][] = [
    [0, 0],
    [0, 5],
    [3, 0],
    [1, 1],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 17],
    [5, 16],
    [7, 33],
    [2, 1000],
    [3, 4097],
  ];
  for (const [R, C] of shapes) {
    const x = randn(R * C, R * 31 + C, 2);
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) x[r * C + c] *= 10 ** ((r % 5) - 2); // rows of different scale
    const src = k.from(x), q = k.alloc(R * C, "u8"), scales = k.alloc(R), y = k.alloc(R * C);
    quantizeInt8Rows(k, src, R, C, q, scales);
    const ref = quantizeInt8RowsRef(x, R, C);
    assert(firstDiff(int8View(q), ref.q) === "", `q ${R}×${C}: ${firstDiff(int8View(q), ref.q)}`);
    assertEquals(Array.from(scales.data), Array.from(ref.scales), `scales ${R}×${C}`);
    dequantizeInt8Rows(k, q, scales, R, C, y);
    assertEquals(Array.from(y.data), Array.from(dequantizeInt8RowsRef(ref.q, ref.scales, R, C)));
    for (let i = 0; i < R * C; i++) {
      const s = scales.data[Math.floor(i / C)];
      const err = Math.abs(y.data[i] - x[i]);
      assert(
        err <= s / 2 * (1 + 2e-5) + Math.abs(x[i]) * 2 ** -23,
        `${R}×${C} i=${i}: error ${err} > scale/2 = ${s / 2}`,
      );
    }
    for (const a of [src, q, scales, y]) a.free();
  }
});

Deno.test("int8: all-zero rows give scale 0 and q 0; rounding is half to even", async () => {
  const k = await testKernels();
  const C = 19;
  const x = new Float32Array(3 * C);
  const row1 = [127, 2.5, 3.5, -2.5, -0.5, 0.5, 1.5, -127, 126.5, 125.5];
  x.set(row1, C); // scale exactly 1
  x.set(randn(C, 3, 1e-3), 2 * C);
  const src = k.from(x), q = k.alloc(3 * C, "u8"), scales = k.alloc(3), y = k.alloc(3 * C);
  quantizeInt8Rows(k, src, 3, C, q, scales);
  assertEquals(scales.data[0], 0);
  assertEquals(scales.data[1], 1);
  assertEquals(Array.from(int8View(q).subarray(0, C)), new Array(C).fill(0));
  assertEquals(Array.from(int8View(q).subarray(C, C + row1.length)), [
    127,
    2,
    4,
    -2,
    0,
    0,
    2,
    -127,
    126,
    126,
  ]);
  dequantizeInt8Rows(k, q, scales, 3, C, y);
  assertEquals(Array.from(y.data.subarray(0, C)), new Array(C).fill(0));
  for (const a of [src, q, scales, y]) a.free();
});

Deno.test("int8 policy: NaN/Inf rows are rejected naming row and column; decode validates before writing", async () => {
  const k = await testKernels();
  const R = 4, C = 9;
  for (const bad of [NaN, Infinity, -Infinity]) {
    const x = randn(R * C, 1);
    x[2 * C + 7] = bad;
    const src = k.from(x), q = k.alloc(R * C, "u8"), scales = k.alloc(R);
    const err = assertThrows(
      () => quantizeInt8Rows(k, src, R, C, q, scales),
      new RegExp(`row 2 holds ${bad} at column 7`),
    );
    assert(err instanceof CodecError && err.reason === "nonfinite");
    for (const a of [src, q, scales]) a.free();
  }
  const x = randn(R * C, 2);
  const src = k.from(x), q = k.alloc(R * C, "u8"), scales = k.alloc(R), out = k.alloc(R * C);
  quantizeInt8Rows(k, src, R, C, q, scales);
  for (const s of [NaN, Infinity, -1]) {
    const good = scales.data[1];
    scales.data[1] = s;
    out.data.fill(7);
    const e = assertThrows(() => dequantizeInt8Rows(k, q, scales, R, C, out), /scale of row 1 is/);
    assertEquals((e as CodecError).reason, "bad-scale");
    assert(out.data.every((v) => v === 7), "out untouched");
    scales.data[1] = good;
  }
  q.data[3 * C + 2] = 0x80;
  out.data.fill(7);
  const e = assertThrows(
    () => dequantizeInt8Rows(k, q, scales, R, C, out),
    /row 3, column 2 is −128/,
  );
  assertEquals((e as CodecError).reason, "bad-q");
  assert(out.data.every((v) => v === 7), "out untouched");
  assertThrows(
    () => quantizeInt8Rows(k, src, R, C + 1, q, scales),
    /src has 36 elements, expected rows·cols = 40/,
  );
  for (const a of [src, q, scales, out]) a.free();
});

// ---------------------------------------------------------------------------
// top-k

/** Encodes with the kernel, checks the bytes against the reference, and decodes back. */
async function topkRoundTrip(x: Float32Array, kCount: number, label: string): Promise<Uint8Array> {
  const k = await testKernels();
  const n = x.length;
  const src = k.from(x);
  const max = topkMaxBytes(n, kCount);
  const out = k.alloc(max, "u8");
  const len = topkEncode(k, src, kCount, out);
  assert(len <= max, `${label}: ${len} bytes > topkMaxBytes ${max}`);
  const bytes = out.data.slice(0, len);
  const ref = topkEncodeRef(x, kCount);
  const d = firstDiff(bytes, ref);
  assert(d === "", `${label}: payload differs from the reference at ${d}`);
  const dense = k.alloc(n);
  dense.data.fill(5);
  topkDecode(k, out, len, n, dense);
  assertEquals(
    Array.from(bitsOf(dense)),
    Array.from(new Uint32Array(topkDecodeRef(ref, n).buffer)),
    label,
  );
  for (const a of [src, out, dense]) a.free();
  return bytes;
}

Deno.test("topk encode equals the reference payload and decodes exactly, many sizes and k", async () => {
  for (const n of SIZES) {
    const x = randn(n, 7 + n);
    const ks = new Set(
      [0, 1, Math.ceil(n / 100), Math.floor(n / 3), n - 1, n].filter((v) => v >= 0 && v <= n),
    );
    for (const kc of ks) await topkRoundTrip(x, kc, `n=${n} k=${kc}`);
  }
  const big = randn(100_000, 99, 1e-2);
  await topkRoundTrip(big, 1000, "n=100000 k=1000");
});

Deno.test("topk ties: equal magnitudes are taken lowest index first, whatever the radix level", async () => {
  const r = rng(3);
  // few distinct magnitudes, both signs, lots of zeros: ties at level 1
  const coarse = Float32Array.from(
    { length: 777 },
    () => [0, 0, 0, 1, -1, 0.5, -0.5, 2][Math.floor(r() * 8)],
  );
  // magnitudes sharing their top 21 bits: the boundary is found at level 3
  const fine = Float32Array.from(
    { length: 1500 },
    () => (r() < 0.5 ? -1 : 1) * (1 + Math.floor(r() * 300) * 2 ** -23),
  );
  // equal top 11 bits, differing at level 2
  const mid = Float32Array.from({ length: 1025 }, () => 1 + Math.floor(r() * 50) * 2 ** -12);
  for (const [name, x] of [["coarse", coarse], ["fine", fine], ["mid", mid]] as const) {
    for (const kc of [1, 5, 64, 100, 333, 500, 777]) {
      if (kc <= x.length) await topkRoundTrip(x, kc, `${name} k=${kc}`);
    }
  }
  const zeros = new Float32Array(50);
  const bytes = await topkRoundTrip(zeros, 7, "zeros");
  // n=50, k=7, seven zero values, then index 0 and deltas of 1
  assertEquals(Array.from(bytes), [50, 7, ...new Array(14).fill(0), 0, 1, 1, 1, 1, 1, 1]);
  const negZero = Float32Array.from([0, -0, 3, -0, -3]);
  await topkRoundTrip(negZero, 3, "signed zeros");
});

Deno.test("topk decode with accumulate scatter-adds into out", async () => {
  const k = await testKernels();
  const n = 1000, kc = 37;
  const x = randn(n, 8);
  const src = k.from(x), out = k.alloc(topkMaxBytes(n, kc), "u8");
  const len = topkEncode(k, src, kc, out);
  const base = randn(n, 9);
  const acc = k.from(base);
  topkDecode(k, out, len, n, acc, { accumulate: true });
  const dec = topkDecodeRef(topkEncodeRef(x, kc), n);
  for (let i = 0; i < n; i++) assertEquals(acc.data[i], Math.fround(base[i] + dec[i]), `i=${i}`);
  for (const a of [src, out, acc]) a.free();
});

Deno.test("topk error feedback: residual = (x + residual) − decode, equal to the reference over steps", async () => {
  const k = await testKernels();
  for (const n of [1, 5, 17, 1000, 4097]) {
    const kc = Math.max(1, Math.ceil(n / 50));
    const res = k.alloc(n);
    res.data.fill(0);
    let refRes: Float32Array = new Float32Array(n);
    const out = k.alloc(topkMaxBytes(n, kc), "u8");
    const dense = k.alloc(n);
    for (let step = 0; step < 4; step++) {
      const x = randn(n, 50 + step + n, 1e-2);
      const before = res.toArray();
      const src = k.from(x);
      const len = topkEncodeWithFeedback(k, src, res, kc, out);
      const ref = topkFeedbackRef(x, refRes, kc);
      const d = firstDiff(out.data.slice(0, len), ref.bytes);
      assert(d === "", `n=${n} step ${step}: payload ${d}`);
      assertEquals(
        Array.from(bitsOf(res)),
        Array.from(new Uint32Array(ref.residual.buffer)),
        `n=${n} step ${step} residual`,
      );
      refRes = ref.residual;
      // Nothing is lost: decode + new residual = x + old residual (up to f32 rounding of the sum).
      topkDecode(k, out, len, n, dense);
      for (let i = 0; i < n; i++) {
        const y = Math.fround(x[i] + before[i]);
        assert(
          Math.abs(dense.data[i] + res.data[i] - y) <= Math.abs(y) * 2 ** -23,
          `n=${n} i=${i} lost mass`,
        );
      }
      src.free();
    }
    for (const a of [res, out, dense]) a.free();
  }
});

Deno.test("topk policy: values past ±65504 are sent as ±65504, the residual keeps the excess", async () => {
  const k = await testKernels();
  const x = k.from([1e6, -3, 0.25, -70000]);
  const res = k.from([0, 0, 0, 0]);
  const out = k.alloc(topkMaxBytes(4, 2), "u8");
  const len = topkEncodeWithFeedback(k, x, res, 2, out);
  const dense = k.alloc(4);
  topkDecode(k, out, len, 4, dense);
  assertEquals(Array.from(dense.data), [65504, 0, 0, -65504]);
  assertEquals(Array.from(res.data), [1e6 - 65504, -3, 0.25, -70000 + 65504]);
  for (const a of [x, res, out, dense]) a.free();
});

Deno.test("topk policy: NaN/Inf input (or x + residual overflowing) is rejected with nothing written", async () => {
  const k = await testKernels();
  const n = 40;
  for (const bad of [NaN, Infinity, -Infinity]) {
    const x = randn(n, 4);
    x[29] = bad;
    const src = k.from(x), out = k.alloc(topkMaxBytes(n, 4), "u8");
    out.data.fill(0xaa);
    const e = assertThrows(() => topkEncode(k, src, 4, out), /x is not finite at index 29/);
    assertEquals((e as CodecError).reason, "nonfinite");
    assert(out.data.every((b) => b === 0xaa), "out untouched");
    const res = k.alloc(n);
    res.data.fill(0.5);
    assertThrows(
      () => topkEncodeWithFeedback(k, src, res, 4, out),
      /x \+ residual is not finite at index 29/,
    );
    assert(res.data.every((v) => v === 0.5), "residual untouched");
    for (const a of [src, out, res]) a.free();
  }
  const src = k.from([3e38, 1]), res = k.from([3e38, 0]), out = k.alloc(topkMaxBytes(2, 1), "u8");
  assertThrows(() => topkEncodeWithFeedback(k, src, res, 1, out), /not finite at index 0/);
  assertEquals(res.data[0], Math.fround(3e38), "residual untouched");
  assertThrows(() => topkEncode(k, src, 3, out), /kCount must be an integer in 0..2/);
  for (const a of [src, res, out]) a.free();
});

function f16le(v: number): number[] {
  const h = f32ToF16BitsRef(f32Bits(v));
  return [h & 0xff, h >> 8];
}

Deno.test("topk decode rejects malformed payloads with a clear error and out untouched", async () => {
  const k = await testKernels();
  const cases: [string, number[], number, RegExp][] = [
    ["header", [], 5, /header \(n, k\) is truncated/],
    ["header", [0x80], 5, /header/],
    ["n-mismatch", [6, 1, ...f16le(1), 0], 5, /payload is for n = 6, expected n = 5/],
    ["k-too-large", [5, 6], 5, /keeps k = 6 entries, more than n = 5/],
    ["truncated", [5, 2, ...f16le(1), 0x3c], 5, /truncated: 5 bytes, its values need 6/],
    ["value-nonfinite", [5, 1, 0x00, 0x7c, 0], 5, /value 0 is Inf or NaN/],
    ["value-nonfinite", [5, 1, 0x01, 0xfe, 0], 5, /value 0 is Inf or NaN/],
    ["index-varint", [5, 2, ...f16le(1), ...f16le(2), 1], 5, /varint of index 1 is truncated/],
    [
      "index-varint",
      [5, 1, ...f16le(1), 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
      5,
      /index 0 is truncated or longer/,
    ],
    ["index-varint", [5, 1, ...f16le(1), 0xff, 0xff, 0xff, 0xff, 0x1f], 5, /longer than 32 bits/],
    ["index-range", [5, 1, ...f16le(1), 5], 5, /index 0 points past n = 5/],
    ["index-range", [5, 2, ...f16le(1), ...f16le(1), 3, 2], 5, /index 1 points past n = 5/],
    [
      "index-range",
      [5, 2, ...f16le(1), ...f16le(1), 3, 0xff, 0xff, 0xff, 0xff, 0x0f],
      5,
      /index 1 points past/,
    ],
    [
      "not-ascending",
      [5, 2, ...f16le(1), ...f16le(1), 3, 0],
      5,
      /index 1 repeats the previous one/,
    ],
    ["trailing", [5, 1, ...f16le(1), 4, 0], 5, /1 trailing bytes after the last index/],
  ];
  for (const [reason, bytes, n, msg] of cases) {
    const buf = k.from(bytes.length ? bytes : [0], undefined, "u8");
    const out = k.alloc(n);
    out.data.fill(7);
    const e = assertThrows(() => topkDecode(k, buf, bytes.length, n, out), msg);
    assert(e instanceof CodecError, `${reason}: not a CodecError`);
    assertEquals(e.reason, reason, `reason for ${JSON.stringify(bytes)}`);
    assert(out.data.every((v) => v === 7), `${reason}: out was written`);
    buf.free();
    out.free();
  }
  // Every strict prefix of a valid payload is rejected.
  const n = 300, kc = 9;
  const x = randn(n, 77);
  x[299] = 5; // a two-byte delta at the end
  const payload = topkEncodeRef(x, kc);
  const buf = k.from(payload, undefined, "u8"), out = k.alloc(n);
  for (let len = 0; len < payload.length; len++) {
    out.data.fill(7);
    assertThrows(() => topkDecode(k, buf, len, n, out));
    assert(out.data.every((v) => v === 7), `prefix ${len}: out was written`);
  }
  topkDecode(k, buf, payload.length, n, out);
  buf.free();
  out.free();
});

Deno.test("topk decode fuzz: random corruptions are either valid payloads or rejected without writing", async () => {
  const k = await testKernels();
  const n = 200, kc = 20;
  const payload = topkEncodeRef(randn(n, 5), kc);
  const r = rng(17);
  const buf = k.alloc(payload.length + 8, "u8"), out = k.alloc(n);
  let rejected = 0;
  for (let t = 0; t < 3000; t++) {
    const p = payload.slice();
    for (let m = 1 + Math.floor(r() * 3); m > 0; m--) {
      p[Math.floor(r() * p.length)] = Math.floor(r() * 256);
    }
    const len = p.length - (r() < 0.2 ? Math.floor(r() * 4) : 0);
    buf.data.set(p);
    out.data.fill(7);
    try {
      topkDecode(k, buf, len, n, out);
    } catch (e) {
      assert(e instanceof CodecError, `unexpected ${e}`);
      assert(out.data.every((v) => v === 7), `trial ${t}: rejected payload wrote to out`);
      rejected++;
      continue;
    }
    // Accepted: it must decode like the reference (which assumes validity).
    assertEquals(
      Array.from(out.data),
      Array.from(topkDecodeRef(p.subarray(0, len), n)),
      `trial ${t}`,
    );
  }
  assert(rejected > 100 && rejected < 3000, `rejected ${rejected} of 3000`);
  buf.free();
  out.free();
});
