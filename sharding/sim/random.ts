// Seeded draws for the simulator: every function takes the PRNG (uniform [0, 1)) explicitly.

/** mulberry32: a small, fast, seeded PRNG returning floats in [0, 1). */
export function createRng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function uniform (rng: () => number, lo: number, hi: number): number {
  return lo + (hi - lo) * rng()
}

/** Standard normal by Box–Muller. */
export function normal (rng: () => number): number {
  const u = Math.max(rng(), 1e-12)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng())
}

/** Log-normal with the given median and log-space sigma, clamped to [min, max]. */
export function logNormal (rng: () => number, median: number, sigma: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, median * Math.exp(sigma * normal(rng))))
}

export function exponential (rng: () => number, mean: number): number {
  return -mean * Math.log(Math.max(1 - rng(), 1e-12))
}

/** Index drawn with probability proportional to weights[i]. */
export function weighted (rng: () => number, weights: number[]): number {
  const total = weights.reduce((a, w) => a + w, 0)
  let x = rng() * total
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i]
    if (x < 0) return i
  }
  return weights.length - 1
}
