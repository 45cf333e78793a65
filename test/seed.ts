// Seeded randomness for tests: TEST_SEED fixes the seed, otherwise one is drawn and printed in
// the test name so a failure can be reproduced with `TEST_SEED=<seed> npx vitest run <file>`.
import { createRng } from '../sharding/sim/random.ts'

export function testSeed (): number {
  const fromEnv = process.env.TEST_SEED
  if (fromEnv !== undefined && fromEnv !== '') return Number(fromEnv) >>> 0
  return (Math.random() * 2 ** 32) >>> 0
}

/** mulberry32 (the simulator's PRNG): a small, fast, seeded PRNG returning floats in [0, 1). */
export const seededRandom: (seed: number) => () => number = createRng
