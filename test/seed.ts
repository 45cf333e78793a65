// Seeded randomness for tests: TEST_SEED fixes the seed, otherwise one is drawn and printed in
// the test name so a failure can be reproduced with `TEST_SEED=<seed> npx vitest run <file>`.

export function testSeed (): number {
  const fromEnv = process.env.TEST_SEED
  if (fromEnv !== undefined && fromEnv !== '') return Number(fromEnv) >>> 0
  return (Math.random() * 2 ** 32) >>> 0
}

/** mulberry32: a small, fast, seeded PRNG returning floats in [0, 1). */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
