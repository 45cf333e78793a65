// Hugging Face checkpoints apply RoPE as rotate-half; the engine applies it to adjacent pairs and
// un-permutes HF's q/k rows (and qwen2's q/k biases) at load. This checks the convention itself:
// HF's rotate-half RoPE on a vector stored in HF order equals our RoPE on the vector the tensor
// reader returns, for every position tried.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createTensorReader } from '../../engine/formats/tensor-reader.ts'
import { rope, ropeFrequencies } from '../../engine/ops.ts'
import { seededRandom, testSeed } from '../seed.ts'

const dir = mkdtempSync(join(tmpdir(), 'mycelium-rope-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const seed = testSeed()

/** transformers' apply_rotary_pos_emb for one head: x·cos + rotate_half(x)·sin. */
function hfRope (x: Float64Array, pos: number, theta: number): Float64Array {
  const d = x.length
  const out = new Float64Array(d)
  for (let i = 0; i < d; i++) {
    const j = i % (d / 2)
    const angle = pos * Math.pow(theta, -(2 * j) / d)
    const rotated = i < d / 2 ? -x[i + d / 2] : x[i - d / 2]
    out[i] = x[i] * Math.cos(angle) + rotated * Math.sin(angle)
  }
  return out
}

describe(`RoPE order conversion (TEST_SEED=${seed})`, () => {
  it.each([[4, 8, 10000], [2, 64, 1e6]])('%i heads of size %i, theta %d', (heads, hd, theta) => {
    const rand = seededRandom(seed)
    const hfOrder = Float32Array.from({ length: heads * hd }, () => rand() * 2 - 1)
    const file = join(dir, `q-${heads}-${hd}.f32`)
    writeFileSync(file, Buffer.from(hfOrder.buffer))
    const reader = createTensorReader()
    const ours = reader.readAll({ name: 'layers.0.bq', file, offset: 0, byteLength: hfOrder.byteLength, dtype: 'f32', shape: [heads * hd], permuteHeads: heads })
    reader.close()
    for (const pos of [0, 1, 7, 100]) {
      const mine = Float32Array.from(ours)
      rope(mine, 1, heads * hd, pos, hd, ropeFrequencies(hd, theta))
      for (let h = 0; h < heads; h++) {
        const hf = hfRope(Float64Array.from(hfOrder.subarray(h * hd, (h + 1) * hd)), pos, theta)
        for (let j = 0; j < hd / 2; j++) {
          for (let c = 0; c < 2; c++) {
            // our element 2j + c is HF's element c·hd/2 + j
            expect(mine[h * hd + 2 * j + c]).toBeCloseTo(hf[c * hd / 2 + j], 4)
          }
        }
      }
    }
  })
})

describe('Llama 3 RoPE scaling', () => {
  /** transformers' _compute_llama3_parameters, transcribed. */
  function llama3InvFreq (hd: number, theta: number, factor: number, low: number, high: number, old: number): number[] {
    return Array.from({ length: hd / 2 }, (_, j) => {
      const invFreq = 1 / Math.pow(theta, (2 * j) / hd)
      const wavelen = 2 * Math.PI / invFreq
      if (wavelen < old / high) return invFreq
      if (wavelen > old / low) return invFreq / factor
      const smooth = (old / wavelen - low) / (high - low)
      return (1 - smooth) * invFreq / factor + smooth * invFreq
    })
  }

  it('matches transformers for Llama-3.2-1B\'s settings (all three bands)', () => {
    const ours = ropeFrequencies(64, 500000, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 })
    const theirs = llama3InvFreq(64, 500000, 32, 1, 4, 8192)
    for (let j = 0; j < 32; j++) expect(ours[j]).toBeCloseTo(theirs[j], 6)
    expect(ours[0]).toBe(ropeFrequencies(64, 500000)[0]) // high frequencies untouched
    expect(ours[31]).toBeCloseTo(ropeFrequencies(64, 500000)[31] / 32, 12) // low ones slowed by `factor`
  })
})
