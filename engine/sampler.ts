// Sampling the next token from logits, separate from the forward pass. Greedy (temperature 0)
// is argmax; otherwise logits / temperature → softmax → optional top-k → optional top-p (nucleus)
// → a draw from a seeded PRNG. The PRNG is llama2.c's xorshift64* and the draw follows run.c's
// `sample`, so with the same seed and logits the same token comes out as in llama2.c.
import { softmax } from './ops.ts'

export interface SamplerOptions {
  /** 0 (default) is greedy. */
  temperature?: number
  /** Nucleus threshold in (0, 1); 1 or 0 disables it. Default 1. */
  topP?: number
  /** Keep only the k most likely tokens; 0 (default) disables it. */
  topK?: number
  /** PRNG seed (llama2.c's rng_seed); default 1. */
  seed?: number | bigint
}

export interface Sampler {
  sample(logits: Float32Array): number
}

const MASK64 = (1n << 64n) - 1n

/** llama2.c's random_u32 / random_f32 over a 64-bit xorshift* state. */
export function createRng (seed: number | bigint): () => number {
  let state = BigInt(seed) & MASK64
  if (state === 0n) state = 1n // xorshift has a fixed point at 0
  return () => {
    state ^= state >> 12n
    state = (state ^ (state << 25n)) & MASK64
    state ^= state >> 27n
    const u32 = Number(((state * 0x2545F4914F6CDD1Dn) & MASK64) >> 32n)
    return Math.fround((u32 >>> 8) / 16777216)
  }
}

/** Index of the largest value; the first one on ties (as llama2.c). */
export function argmax (x: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i
  return best
}

export function createSampler (options: SamplerOptions = {}): Sampler {
  const temperature = options.temperature ?? 0
  const topP = options.topP ?? 1
  const topK = options.topK ?? 0
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new RangeError(`temperature must be ≥ 0, got ${temperature}`)
  if (!(topP >= 0 && topP <= 1)) throw new RangeError(`topP must be in [0, 1], got ${topP}`)
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`topK must be a non-negative integer, got ${topK}`)
  const random = createRng(options.seed ?? 1)

  return {
    sample (logits: Float32Array): number {
      if (temperature === 0) return argmax(logits)
      const probs = new Float32Array(logits.length)
      for (let i = 0; i < logits.length; i++) probs[i] = logits[i] / temperature
      softmax(probs, probs.length)
      const coin = random()
      if (topK > 0 && topK < probs.length) return sampleTop(probs, topK, topP > 0 && topP < 1 ? topP : 1, coin)
      if (topP > 0 && topP < 1) return sampleTopP(probs, topP, coin)
      return sampleMult(probs, coin)
    }
  }
}

/** Draws from the full distribution: the first index whose cumulative probability exceeds coin. */
function sampleMult (probs: Float32Array, coin: number): number {
  let cdf = 0
  for (let i = 0; i < probs.length; i++) {
    cdf += probs[i]
    if (coin < cdf) return i
  }
  return probs.length - 1 // rounding
}

/** llama2.c's sample_topp: drop tokens below (1 - p)/(n - 1), sort, cut at cumulative p, draw. */
function sampleTopP (probs: Float32Array, topP: number, coin: number): number {
  const cutoff = (1 - topP) / (probs.length - 1)
  const candidates: number[] = []
  for (let i = 0; i < probs.length; i++) if (probs[i] >= cutoff) candidates.push(i)
  return drawFromSorted(probs, candidates, topP, coin)
}

/** Top-k then (optionally) top-p over the k survivors. */
function sampleTop (probs: Float32Array, k: number, topP: number, coin: number): number {
  const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a] || a - b).slice(0, k)
  let sum = 0
  for (const i of order) sum += probs[i]
  const renorm = new Float32Array(probs.length)
  for (const i of order) renorm[i] = probs[i] / sum
  return drawFromSorted(renorm, order, topP, coin)
}

function drawFromSorted (probs: Float32Array, candidates: number[], topP: number, coin: number): number {
  candidates.sort((a, b) => probs[b] - probs[a] || a - b)
  let cumulative = 0
  let last = candidates.length - 1
  for (let i = 0; i < candidates.length; i++) {
    cumulative += probs[candidates[i]]
    if (cumulative > topP) {
      last = i
      break
    }
  }
  const r = coin * cumulative
  let cdf = 0
  for (let i = 0; i <= last; i++) {
    cdf += probs[candidates[i]]
    if (r < cdf) return candidates[i]
  }
  return candidates[last]
}
