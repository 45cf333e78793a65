// Stacked packing (wq | wk | wv, w1 | w3 in one matrix) holds exactly the rows that packing each
// tensor alone gives, in every dtype.
import { describe, expect, it } from 'vitest'
import { createEngineMemory } from '../../engine/engine-memory.ts'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { createTensorReader } from '../../engine/formats/tensor-reader.ts'
import { packStacked, packTensor } from '../../engine/pack-source.ts'
import { dequantizeRow } from '../../engine/quantize.ts'
import { STORIES260K } from '../models.ts'

describe('packStacked', () => {
  it.each(['f32', 'f16', 'q8_0', 'q4_0'] as const)('%s: rows equal the separately packed tensors', async (dtype) => {
    const source = await openLlama2c(STORIES260K)
    const refs = ['wq', 'wk', 'wv'].map((n) => source.tensors.get(`layers.2.${n}`)!)
    const mem = createEngineMemory({ shared: false })
    const reader = createTensorReader()
    const stacked = packStacked(mem, dtype, refs, reader)
    const parts = refs.map((r) => packTensor(mem, dtype, r, reader))
    reader.close()
    expect(stacked.rows).toBe(64 + 32 + 32)
    const a = new Float32Array(64)
    const b = new Float32Array(64)
    let row = 0
    for (const part of parts) {
      for (let r = 0; r < part.rows; r++, row++) {
        dequantizeRow(mem, stacked, row, a)
        dequantizeRow(mem, part, r, b)
        expect(a).toEqual(b)
      }
    }
  })
})
