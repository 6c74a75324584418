/**
 * Module importance scores (DLORA.md §3, issue 5), computed on the device from its own LoRA
 * parameters; only the resulting numbers leave the device. Pure functions on Float32Arrays, f64
 * accumulation. Shapes follow runtime/model/modules.ts: A is r×in, B is out×r, ΔW = s·B·A is
 * out×in.
 *
 * - `changeNorm`: the paper's score, ‖θ(now) − θ(last)‖₂ / √numel over A and B together.
 * - `effectiveWeightChange`: ‖s·(B·A − B₀·A₀)‖_F, the change of what the module adds to W. It is
 *   invariant to the A/B rescaling and rotation symmetries that make the raw parameter change
 *   ambiguous (B·A = (B·M)(M⁻¹·A)), and it is computed from r×r-sized Gram matrices, never forming
 *   the out×in product.
 * - `SensitivityAccumulator`: Σ|θ·∇θ| over a window, the first-order estimate of how much the loss
 *   would change if the module were removed (|θᵀ∇θ| per parameter, summed absolutely).
 */

export type ScoreName = "change" | "effective" | "sensitivity";
export const SCORES: readonly ScoreName[] = ["change", "effective", "sensitivity"];

function asParts(x: Float32Array | readonly Float32Array[]): readonly Float32Array[] {
  return x instanceof Float32Array ? [x] : x;
}

/**
 * c = ‖now − last‖₂ / √numel, the parts (e.g. [A, B]) taken as one vector.
 * now, last: matching lists of arrays (or one array each).
 */
export function changeNorm(
  now: Float32Array | readonly Float32Array[],
  last: Float32Array | readonly Float32Array[],
): number {
  const a = asParts(now), b = asParts(last);
  if (a.length !== b.length) {
    throw new Error(`changeNorm: ${a.length} parts now but ${b.length} at the last decision`);
  }
  let sum = 0, n = 0;
  for (let p = 0; p < a.length; p++) {
    if (a[p].length !== b[p].length) {
      throw new Error(
        `changeNorm: part ${p} has ${a[p].length} elements now but ${b[p].length} before`,
      );
    }
    for (let i = 0; i < a[p].length; i++) {
      const d = a[p][i] - b[p][i];
      sum += d * d;
    }
    n += a[p].length;
  }
  return n === 0 ? 0 : Math.sqrt(sum / n);
}

function checkLen(name: string, x: Float32Array, expected: number, what: string): void {
  if (x.length !== expected) {
    throw new Error(
      `effectiveWeightChange: ${name} has ${x.length} elements, expected ${what} = ${expected}`,
    );
  }
}

/** M (n×n, upper triangle) += v·vᵀ, n = v.length. */
function addOuterUpper(M: Float64Array, v: Float64Array): void {
  const n = v.length;
  for (let i = 0; i < n; i++) {
    const vi = v[i];
    if (vi === 0) continue;
    for (let j = i; j < n; j++) M[i * n + j] += vi * v[j];
  }
}

/**
 * ‖s·(B·A − B₀·A₀)‖_F without forming an out×in matrix.
 * A, A0: (r, in); B, B0: (out, r); returns a scalar.
 *
 * Write the difference as one product of rank ≤ 2r, B·A − B₀·A₀ = P·Q with P = [B, B − B₀]
 * (out×2r) and Q = [A − A₀; A₀] (2r×in). Then ‖P·Q‖²_F = tr(QᵀPᵀPQ) = tr((PᵀP)(QQᵀ)), two 2r×2r
 * Gram matrices: O(r²·(in + out)) work. This is the trace identity of the direct expansion
 * tr(AᵀBᵀBA) − 2tr(A₀ᵀB₀ᵀBA) + tr(A₀ᵀB₀ᵀB₀A₀), rearranged so that no two large terms cancel:
 * tr(GH) = tr(BᵀB·ΔAΔAᵀ) + 2·tr(BᵀΔB·A₀ΔAᵀ) + tr(ΔBᵀΔB·A₀A₀ᵀ), every term O(Δ²), so the
 * result keeps its relative accuracy when the change is tiny next to ‖B·A‖ (the direct expansion
 * subtracts O(‖BA‖²) terms and loses every digit once ‖Δ‖/‖BA‖ nears √eps ≈ 10⁻⁸). Differences
 * of f32 inputs are exact in f64. The result is clamped at 0 before the square root.
 */
export function effectiveWeightChange(
  A: Float32Array,
  B: Float32Array,
  A0: Float32Array,
  B0: Float32Array,
  r: number,
  inDim: number,
  outDim: number,
  s = 1,
): number {
  checkLen("A", A, r * inDim, "r·in");
  checkLen("A0", A0, r * inDim, "r·in");
  checkLen("B", B, outDim * r, "out·r");
  checkLen("B0", B0, outDim * r, "out·r");
  const r2 = 2 * r;
  // G = PᵀP (2r×2r), columns of P: B[:, i] for i < r, (B − B0)[:, i − r] otherwise.
  const G = new Float64Array(r2 * r2);
  const prow = new Float64Array(r2);
  for (let o = 0; o < outDim; o++) {
    for (let i = 0; i < r; i++) {
      const b = B[o * r + i];
      prow[i] = b;
      prow[r + i] = b - B0[o * r + i];
    }
    addOuterUpper(G, prow);
  }
  // H = QQᵀ (2r×2r), rows of Q: (A − A0)[i, :] for i < r, A0[i − r, :] otherwise.
  const H = new Float64Array(r2 * r2);
  const qcol = new Float64Array(r2);
  for (let c = 0; c < inDim; c++) {
    for (let i = 0; i < r; i++) {
      const a0 = A0[i * inDim + c];
      qcol[i] = A[i * inDim + c] - a0;
      qcol[r + i] = a0;
    }
    addOuterUpper(H, qcol);
  }
  // tr(G·H) = Σ_ij G_ij H_ji; both symmetric, upper triangles stored: off-diagonals count twice.
  let sq = 0;
  for (let i = 0; i < r2; i++) {
    sq += G[i * r2 + i] * H[i * r2 + i];
    for (let j = i + 1; j < r2; j++) sq += 2 * G[i * r2 + j] * H[i * r2 + j];
  }
  return Math.abs(s) * Math.sqrt(Math.max(0, sq));
}

/**
 * Σ|θ·∇θ| over the steps of a window, one module's parameters (A and B) at a time.
 * Call `add(θ, ∇θ)` for each part after each backward (before the optimizer update), `endStep()`
 * once per step, read `value()` / `mean()` at the event and `reset()` for the next window.
 */
export class SensitivityAccumulator {
  #sum = 0;
  #steps = 0;
  #numel = 0;

  /** Adds Σ_j |θ_j·g_j| of one part. theta, grad: same length. */
  add(theta: Float32Array, grad: Float32Array): void {
    if (theta.length !== grad.length) {
      throw new Error(
        `SensitivityAccumulator: θ has ${theta.length} elements but ∇θ has ${grad.length}`,
      );
    }
    let s = 0;
    for (let i = 0; i < theta.length; i++) s += Math.abs(theta[i] * grad[i]);
    this.#sum += s;
    if (this.#steps === 0) this.#numel += theta.length;
  }

  /** Marks the end of one step's `add` calls. */
  endStep(): void {
    this.#steps++;
  }

  get steps(): number {
    return this.#steps;
  }

  /** Σ over the window of Σ|θ·∇θ|. */
  value(): number {
    return this.#sum;
  }

  /** The window's sum per step and per parameter (comparable across shapes and windows). */
  mean(): number {
    return this.#steps === 0 || this.#numel === 0 ? 0 : this.#sum / (this.#steps * this.#numel);
  }

  reset(): void {
    this.#sum = 0;
    this.#steps = 0;
    this.#numel = 0;
  }
}
