import { type F32, Kernels } from "./core.ts";
import {
  attentionBackward,
  attentionDecode,
  attentionForward,
  type AttentionShape,
  kvCacheWrite,
} from "./attention.ts";
import { attentionBackwardRef, attentionForwardRef } from "./reference/attention.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertThrows,
  numericGrad,
  randn,
  testKernels,
} from "../tests/util.ts";

// B, T, NH, NKV, hs: tiny, odd head sizes, GQA groups of 1/2/3/6, vector tails in T
const SHAPES: AttentionShape[] = [
  { B: 1, T: 1, NH: 1, NKV: 1, hs: 1 },
  { B: 1, T: 1, NH: 6, NKV: 2, hs: 4 },
  { B: 2, T: 3, NH: 6, NKV: 2, hs: 5 },
  { B: 1, T: 17, NH: 6, NKV: 3, hs: 7 },
  { B: 2, T: 17, NH: 6, NKV: 6, hs: 8 },
  { B: 1, T: 5, NH: 4, NKV: 1, hs: 3 },
  { B: 1, T: 64, NH: 4, NKV: 2, hs: 16 },
  { B: 1, T: 64, NH: 2, NKV: 1, hs: 64 },
];

const label = (s: AttentionShape) => `B=${s.B} T=${s.T} NH=${s.NH} NKV=${s.NKV} hs=${s.hs}`;

interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

function inputs(s: AttentionShape, seed: number): Inputs {
  const nq = s.B * s.T * s.NH * s.hs, nkv = s.B * s.T * s.NKV * s.hs;
  return { q: randn(nq, seed, 1.5), k: randn(nkv, seed + 1, 1.5), v: randn(nkv, seed + 2) };
}

/** Runs forward (and backward when dout is given) in wasm; returns copies. */
function run(k: Kernels, s: AttentionShape, x: Inputs, dout?: Float32Array) {
  const q = k.from(x.q), key = k.from(x.k), value = k.from(x.v);
  const out = k.alloc(x.q.length), att = k.alloc(s.B * s.NH * s.T * s.T);
  const arrs: F32[] = [q, key, value, out, att];
  attentionForward(k, out, att, q, key, value, s);
  const res = { out: out.toArray(), att: att.toArray(), dq: null as Float32Array | null };
  let grads: { dq: Float32Array; dk: Float32Array; dv: Float32Array } | null = null;
  if (dout) {
    const dy = k.from(dout), dq = k.alloc(x.q.length);
    // garbage in the outputs: the backward must overwrite, not add
    const dk = k.from(randn(x.k.length, 99)), dv = k.from(randn(x.v.length, 98));
    arrs.push(dy, dq, dk, dv);
    attentionBackward(k, dq, dk, dv, dy, q, key, value, att, s);
    grads = { dq: dq.toArray(), dk: dk.toArray(), dv: dv.toArray() };
  }
  for (const a of arrs) a.free();
  return { ...res, grads };
}

Deno.test("attention forward matches the reference (out and att) over shapes", async () => {
  const k = await testKernels();
  for (const s of SHAPES) {
    const x = inputs(s, s.T * 31 + s.hs);
    const got = run(k, s, x);
    const ref = attentionForwardRef(x.q, x.k, x.v, s);
    assertClose(got.out, ref.out, { atol: 2e-6, rtol: 1e-5, msg: `out ${label(s)}` });
    assertClose(got.att, ref.att, { atol: 1e-6, rtol: 1e-5, msg: `att ${label(s)}` });
  }
});

Deno.test("attention is causal: perturbing a future k/v leaves earlier outputs bit-identical", async () => {
  const k = await testKernels();
  for (const s of [SHAPES[3], SHAPES[4], SHAPES[6]]) {
    const x = inputs(s, 7);
    const base = run(k, s, x);
    const tf = Math.floor(s.T / 2); // perturbed position
    const k2 = x.k.slice(), v2 = x.v.slice();
    for (let b = 0; b < s.B; b++) {
      for (let i = 0; i < s.NKV * s.hs; i++) {
        k2[(b * s.T + tf) * s.NKV * s.hs + i] += 3;
        v2[(b * s.T + tf) * s.NKV * s.hs + i] -= 5;
      }
    }
    const moved = run(k, s, { q: x.q, k: k2, v: v2 });
    const row = s.NH * s.hs;
    let changed = false;
    for (let b = 0; b < s.B; b++) {
      for (let t = 0; t < s.T; t++) {
        const a = base.out.subarray((b * s.T + t) * row, (b * s.T + t + 1) * row);
        const c = moved.out.subarray((b * s.T + t) * row, (b * s.T + t + 1) * row);
        if (t < tf) assertEquals([...c], [...a], `${label(s)} t=${t} < ${tf}`);
        else changed ||= a.some((v, i) => v !== c[i]);
      }
    }
    assert(changed, `${label(s)}: the perturbation never showed (test is vacuous)`);
  }
});

Deno.test("attention backward matches the reference over shapes", async () => {
  const k = await testKernels();
  for (const s of SHAPES) {
    const x = inputs(s, s.T * 7 + s.NKV);
    const dout = randn(x.q.length, 77 + s.hs);
    const { grads } = run(k, s, x, dout);
    const ref = attentionBackwardRef(dout, x.q, x.k, x.v, s);
    const tol = { atol: 1e-5, rtol: 1e-4 };
    assertClose(grads!.dq, ref.dq, { ...tol, msg: `dq ${label(s)}` });
    assertClose(grads!.dk, ref.dk, { ...tol, msg: `dk ${label(s)}` });
    assertClose(grads!.dv, ref.dv, { ...tol, msg: `dv ${label(s)}` });
  }
});

Deno.test("attention backward with att = null recomputes it: bitwise the same grads", async () => {
  const one = await testKernels();
  const two = await Kernels.load({ threads: 2 });
  await new Promise((resolve) => setTimeout(resolve, 50)); // see the 2-thread test below
  try {
    const big = { B: 2, T: 64, NH: 4, NKV: 2, hs: 16 };
    for (const [k, shapes] of [[one, SHAPES], [two, [big, SHAPES[4]]]] as const) {
      for (const s of shapes) {
        const x = inputs(s, s.T * 5 + s.hs);
        const dout = randn(x.q.length, 55 + s.NH);
        const saved = run(k, s, x, dout).grads!;
        const arrs = [x.q, x.k, x.v, dout].map((a) => k.from(a));
        const [q, key, value, dy] = arrs;
        const dq = k.from(randn(x.q.length, 97));
        const dk = k.from(randn(x.k.length, 99)), dv = k.from(randn(x.v.length, 98));
        attentionBackward(k, dq, dk, dv, dy, q, key, value, null, s);
        const msg = `${label(s)}, ${k.threads} thread(s)`;
        assertEquals([...dq.data], [...saved.dq], `dq ${msg}`);
        assertEquals([...dk.data], [...saved.dk], `dk ${msg}`);
        assertEquals([...dv.data], [...saved.dv], `dv ${msg}`);
        for (const a of [...arrs, dq, dk, dv]) a.free();
      }
    }
  } finally {
    two.close();
  }
});

Deno.test("attention backward equals central differences of L = Σ out·R", async () => {
  const k = await testKernels();
  const cases: AttentionShape[] = [
    { B: 1, T: 1, NH: 2, NKV: 1, hs: 3 },
    { B: 2, T: 5, NH: 6, NKV: 3, hs: 5 },
    { B: 1, T: 6, NH: 4, NKV: 2, hs: 4 },
  ];
  for (const s of cases) {
    const x = inputs(s, 123 + s.T);
    const R = randn(x.q.length, 5 + s.T);
    const q = Float64Array.from(x.q), kk = Float64Array.from(x.k), v = Float64Array.from(x.v);
    const loss = () => attentionForwardRef(q, kk, v, s).out.reduce((a, o, i) => a + o * R[i], 0);
    const { grads } = run(k, s, x, R);
    const tol = { atol: 1e-4, rtol: 1e-3 };
    assertClose(grads!.dq, q.map((_, i) => numericGrad(loss, q, i)), {
      ...tol,
      msg: `dq ${label(s)}`,
    });
    assertClose(grads!.dk, kk.map((_, i) => numericGrad(loss, kk, i)), {
      ...tol,
      msg: `dk ${label(s)}`,
    });
    assertClose(grads!.dv, v.map((_, i) => numericGrad(loss, v, i)), {
      ...tol,
      msg: `dv ${label(s)}`,
    });
  }
});

/** Decodes position by position from a KV cache; returns out (B,T,NH,hs). */
function decodeAll(k: Kernels, s: AttentionShape, x: Inputs, maxT: number): Float32Array {
  const { B, T, NH, NKV, hs } = s;
  const kc = k.from(new Float32Array(B * NKV * maxT * hs).fill(NaN));
  const vc = k.from(new Float32Array(B * NKV * maxT * hs).fill(NaN)); // unused slots must stay unread
  const q1 = k.alloc(B * NH * hs), out1 = k.alloc(B * NH * hs), scores = k.alloc(B * NH * maxT);
  const kt = k.alloc(B * NKV * hs), vt = k.alloc(B * NKV * hs);
  const out = new Float32Array(B * T * NH * hs);
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < B; b++) {
      const qs = (b * T + t) * NH * hs, ks = (b * T + t) * NKV * hs;
      q1.data.set(x.q.subarray(qs, qs + NH * hs), b * NH * hs);
      kt.data.set(x.k.subarray(ks, ks + NKV * hs), b * NKV * hs);
      vt.data.set(x.v.subarray(ks, ks + NKV * hs), b * NKV * hs);
    }
    kvCacheWrite(k, kc, kt, { B, T: 1, NKV, hs, maxT, pos0: t });
    kvCacheWrite(k, vc, vt, { B, T: 1, NKV, hs, maxT, pos0: t });
    attentionDecode(
      k,
      out1,
      q1,
      kc,
      vc,
      { B, NH, NKV, hs, L: t + 1, maxT },
      t % 2 ? scores : undefined,
    );
    for (let b = 0; b < B; b++) {
      out.set(out1.data.subarray(b * NH * hs, (b + 1) * NH * hs), (b * T + t) * NH * hs);
    }
  }
  for (const a of [kc, vc, q1, out1, scores, kt, vt]) a.free();
  return out;
}

Deno.test("attention decode with a KV cache reproduces the full forward position by position", async () => {
  const k = await testKernels();
  for (const s of [SHAPES[0], SHAPES[2], SHAPES[3], SHAPES[4]]) {
    const x = inputs(s, 55 + s.hs);
    const full = run(k, s, x).out;
    assertClose(decodeAll(k, s, x, s.T + 3), full, { atol: 1e-6, rtol: 1e-5, msg: label(s) });
  }
});

Deno.test("attention on 2 threads gives the single-thread results", async () => {
  const one = await testKernels();
  const two = await Kernels.load({ threads: 2 });
  // A worker posts "ready" before it reads the pool's generation counter, so a
  // job published at once can be missed and the caller spins forever: let the
  // workers reach their wait loop first (race in worker.ts, reported).
  await new Promise((resolve) => setTimeout(resolve, 50));
  try {
    assertEquals(two.threads, 2);
    for (
      const s of [{ B: 2, T: 64, NH: 4, NKV: 2, hs: 16 }, { B: 1, T: 96, NH: 6, NKV: 3, hs: 7 }]
    ) {
      const x = inputs(s, 3), dout = randn(x.q.length, 4);
      const a = run(one, s, x, dout), b = run(two, s, x, dout);
      assertEquals([...b.out], [...a.out], `out ${label(s)}`);
      assertEquals([...b.att], [...a.att], `att ${label(s)}`);
      for (const g of ["dq", "dk", "dv"] as const) {
        assertEquals([...b.grads![g]], [...a.grads![g]], `${g} ${label(s)}`);
      }
    }
    // one decode step long enough to split over the (b,h) pairs
    const d = { B: 1, NH: 8, NKV: 2, hs: 64, L: 250, maxT: 256 };
    const q = randn(d.NH * d.hs, 5), kc = randn(d.NKV * d.maxT * d.hs, 6);
    const vc = randn(d.NKV * d.maxT * d.hs, 7);
    const step = (k: Kernels) => {
      const arrs = [k.from(q), k.from(kc), k.from(vc), k.alloc(d.NH * d.hs)];
      attentionDecode(k, arrs[3], arrs[0], arrs[1], arrs[2], d);
      const out = arrs[3].toArray();
      for (const a of arrs) a.free();
      return [...out];
    };
    assertEquals(step(two), step(one), "decode");
  } finally {
    two.close();
  }
});

Deno.test("attention rejects bad head groupings and sizes", async () => {
  const k = await testKernels();
  const s = { B: 1, T: 2, NH: 6, NKV: 4, hs: 3 };
  const a = k.alloc(36), b = k.alloc(24), att = k.alloc(24);
  assertThrows(
    () => attentionForward(k, a, att, a, b, b, s),
    /n_kv_heads 4 does not divide n_heads 6/,
  );
  assertThrows(
    () => attentionForward(k, a, att, a, b, b, { ...s, NKV: 3 }),
    /k has 24 elements, expected B·T·NKV·hs = 18/,
  );
  assertThrows(
    () => attentionDecode(k, a, a, b, b, { B: 1, NH: 6, NKV: 2, hs: 3, L: 5, maxT: 4 }),
    /L = 5 is beyond the cache's maxT = 4/,
  );
  for (const x of [a, b, att]) x.free();
});
