// The small f32 operations of a Llama layer, written as plain loops named after the math (as in
// llama2.c). They work on rows of a [T, n] matrix so a prefill chunk runs them in one call; the
// large matrix products go to the ComputeBackend instead. `attention` here is the reference
// backend's; the wasm backend runs its SIMD twin across threads.
import type { AttentionShape, RopeScaling } from './index.ts'

/** out[t] = weight ⊙ x[t] / sqrt(mean(x[t]²) + eps), for each of T rows of width n. */
export function rmsnorm (out: Float32Array, x: Float32Array, weight: Float32Array, T: number, n: number, eps: number): void {
  for (let t = 0; t < T; t++) {
    const o = t * n
    let ss = 0
    for (let j = 0; j < n; j++) ss += x[o + j] * x[o + j]
    const scale = 1 / Math.sqrt(ss / n + eps)
    for (let j = 0; j < n; j++) out[o + j] = weight[j] * (scale * x[o + j])
  }
}

/** x[t] += bias, for each of T rows. */
export function addBias (x: Float32Array, bias: Float32Array, T: number): void {
  const n = bias.length
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < n; j++) x[t * n + j] += bias[j]
  }
}

/** x += y elementwise over the first `length` values (the residual connection). */
export function accumulate (x: Float32Array, y: Float32Array, length: number): void {
  for (let i = 0; i < length; i++) x[i] += y[i]
}

/** gate = silu(gate) ⊙ up: the SwiGLU activation of the feed-forward block. */
export function swiglu (gate: Float32Array, up: Float32Array, length: number): void {
  for (let i = 0; i < length; i++) {
    const g = gate[i]
    gate[i] = (g / (1 + Math.exp(-g))) * up[i]
  }
}

/** llama.cpp's `rope_freqs` for Llama 3 scaling: the divisor of each pair's frequency. */
export function llama3RopeFactors (headSize: number, theta: number, scaling: RopeScaling): number[] {
  const base = ropeFrequencies(headSize, theta)
  const scaled = ropeFrequencies(headSize, theta, scaling)
  return Array.from(base, (f, j) => f / scaled[j])
}

/**
 * RoPE frequencies of one head: pair j (elements 2j, 2j+1) turns by position × freqs[j].
 * Unscaled: theta^(-2j / headSize), computed in float32 steps as llama2.c does. With Llama 3
 * scaling (transformers' `_compute_llama3_parameters`): wavelengths longer than
 * originalMaxPositions / lowFreqFactor are slowed by `factor`, shorter than
 * originalMaxPositions / highFreqFactor are kept, and the band between is interpolated.
 */
export function ropeFrequencies (headSize: number, theta: number, scaling?: RopeScaling): Float32Array {
  const freqs = new Float32Array(headSize / 2)
  for (let j = 0; j < freqs.length; j++) {
    freqs[j] = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * j) / headSize))))
  }
  if (scaling === undefined) return freqs
  if (scaling.type === 'factors') {
    for (let j = 0; j < freqs.length; j++) freqs[j] = freqs[j] / scaling.factors[j]
    return freqs
  }
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling
  const lowFreqWavelen = originalMaxPositions / lowFreqFactor
  const highFreqWavelen = originalMaxPositions / highFreqFactor
  for (let j = 0; j < freqs.length; j++) {
    const f = freqs[j]
    const wavelen = (2 * Math.PI) / f
    if (wavelen > lowFreqWavelen) {
      freqs[j] = f / factor
    } else if (wavelen >= highFreqWavelen) {
      const smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
      freqs[j] = (1 - smooth) * (f / factor) + smooth * f
    }
  }
  return freqs
}

/**
 * Rotary position embedding on adjacent pairs (llama2.c convention): within each head, pair
 * (2j, 2j+1) at position p turns by p × freqs[j] (see ropeFrequencies). `vec` is [T, width]; row
 * t sits at position pos0 + t. The angle is rounded to float32 as llama2.c computes it.
 */
export function rope (vec: Float32Array, T: number, width: number, pos0: number, headSize: number, freqs: Float32Array): void {
  const half = headSize / 2
  const cos = new Float32Array(half)
  const sin = new Float32Array(half)
  for (let t = 0; t < T; t++) {
    const pos = pos0 + t
    for (let j = 0; j < half; j++) {
      const val = Math.fround(pos * freqs[j])
      cos[j] = Math.cos(val)
      sin[j] = Math.sin(val)
    }
    const row = t * width
    for (let i = 0; i < width; i += 2) {
      const j = (i % headSize) >> 1
      const v0 = vec[row + i]
      const v1 = vec[row + i + 1]
      vec[row + i] = v0 * cos[j] - v1 * sin[j]
      vec[row + i + 1] = v0 * sin[j] + v1 * cos[j]
    }
  }
}

/** In-place softmax over x[0, n). */
export function softmax (x: Float32Array, n: number): void {
  let max = x[0]
  for (let i = 1; i < n; i++) if (x[i] > max) max = x[i]
  let sum = 0
  for (let i = 0; i < n; i++) {
    x[i] = Math.exp(x[i] - max)
    sum += x[i]
  }
  for (let i = 0; i < n; i++) x[i] /= sum
}


/**
 * Causal grouped-query attention for T query rows at positions pos0 … pos0 + T - 1.
 * q: [T, nHeads × headSize]; keys / values: [positions, nKvHeads × headSize] (the KV cache,
 * already holding this chunk's rows); out: [T, nHeads × headSize]; scores: scratch ≥ pos0 + T.
 */
export function attention (out: Float32Array, q: Float32Array, keys: Float32Array, values: Float32Array,
  T: number, pos0: number, shape: AttentionShape, scores: Float32Array): void {
  const { nHeads, nKvHeads, headSize } = shape
  const dim = nHeads * headSize
  const kvDim = nKvHeads * headSize
  const kvMul = nHeads / nKvHeads
  const scale = Math.sqrt(headSize)
  for (let t = 0; t < T; t++) {
    const pos = pos0 + t
    for (let h = 0; h < nHeads; h++) {
      const qo = t * dim + h * headSize
      const kvo = Math.floor(h / kvMul) * headSize
      for (let s = 0; s <= pos; s++) {
        const ko = s * kvDim + kvo
        let dot = 0
        for (let i = 0; i < headSize; i++) dot += q[qo + i] * keys[ko + i]
        scores[s] = dot / scale
      }
      softmax(scores, pos + 1)
      const oo = t * dim + h * headSize
      out.fill(0, oo, oo + headSize)
      for (let s = 0; s <= pos; s++) {
        const a = scores[s]
        const vo = s * kvDim + kvo
        for (let i = 0; i < headSize; i++) out[oo + i] += a * values[vo + i]
      }
    }
  }
}
