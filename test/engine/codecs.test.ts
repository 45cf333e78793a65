// Hidden-state codecs: f32 is exact, f16 and int8 stay inside their stated error bounds, and a
// byte length that does not match the declared size is a ShapeError.
import { describe, expect, it } from 'vitest'
import { decodeHidden, encodeHidden, encodedHiddenBytes, HIDDEN_INT8_BLOCK } from '../../engine/codecs.ts'
import { seededRandom, testSeed } from '../seed.ts'

const seed = testSeed()

function sample (n: number): Float32Array {
  const rand = seededRandom(seed)
  const x = new Float32Array(n)
  for (let i = 0; i < n; i++) x[i] = (rand() - 0.5) * 20 * (i % 97 === 0 ? 50 : 1) // a few outliers, like real activations
  return x
}

describe(`hidden-state codecs (TEST_SEED=${seed})`, () => {
  const x = sample(5 * 288 + 7)

  it('f32 round-trips exactly', () => {
    expect(decodeHidden('f32', encodeHidden('f32', x), x.length)).toEqual(x)
  })

  it('f16 is within 2^-11 relative error', () => {
    const y = decodeHidden('f16', encodeHidden('f16', x), x.length)
    for (let i = 0; i < x.length; i++) expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(Math.abs(x[i]) * 2 ** -11 + 1e-7)
  })

  it('int8 is within half a quantization step of its block', () => {
    const y = decodeHidden('int8', encodeHidden('int8', x), x.length)
    for (let b = 0; b * HIDDEN_INT8_BLOCK < x.length; b++) {
      const block = x.subarray(b * HIDDEN_INT8_BLOCK, (b + 1) * HIDDEN_INT8_BLOCK)
      const step = Math.max(...Array.from(block, Math.abs)) / 127
      for (let i = 0; i < block.length; i++) {
        expect(Math.abs(y[b * HIDDEN_INT8_BLOCK + i] - block[i])).toBeLessThanOrEqual(step / 2 * (1 + 1e-6) + 1e-7)
      }
    }
  })

  it('int8 takes about a quarter of the bytes of f32 (1 byte per value + a scale per block)', () => {
    expect(encodedHiddenBytes('int8', 4096)).toBe(4096 + (4096 / HIDDEN_INT8_BLOCK) * 4)
    expect(encodedHiddenBytes('int8', 4096)).toBeLessThan(encodedHiddenBytes('f32', 4096) * 0.3)
  })

  it.each(['f32', 'f16', 'int8'] as const)('%s rejects a wrong byte length', (codec) => {
    const bytes = encodeHidden(codec, x)
    expect(() => decodeHidden(codec, bytes.subarray(1), x.length)).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => decodeHidden(codec, bytes, x.length + 1)).toThrow(expect.objectContaining({ name: 'ShapeError' }))
  })

  it('all-zero blocks encode without dividing by zero', () => {
    const z = new Float32Array(100)
    expect(decodeHidden('int8', encodeHidden('int8', z), 100)).toEqual(z)
  })
})
