// Llama 3 RoPE scaling end to end: a model whose config.json carries rope_scaling "llama3",
// converted to GGUF (where llama.cpp keeps the scaling as a rope_freqs tensor), gives the same
// logits from both files, and different ones from the same weights without the scaling.
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openModel } from '../../engine/formats/open-model.ts'
import { writeHfModel } from '../../engine/formats/safetensors-writer.ts'
import type { ModelConfig } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { spmVocabFromPieces } from '../../engine/tokenizer-gguf.ts'
import { writeGgufModel } from '../../engine/formats/gguf-writer.ts'
import { memoryModel, tempDir, tinyConfig } from './formats/fixtures.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const tmp = tempDir('rope-scaling')
afterAll(tmp.cleanup)

async function logits (path: string, tokens: number[]): Promise<Float32Array> {
  const shard = await loadShard(await openModel(path))
  try {
    return shard.openSession().step({ tokens }, { logits: 'all' }).logits as Float32Array
  } finally {
    await shard.close()
  }
}

describe(`Llama 3 RoPE scaling (TEST_SEED=${seed})`, () => {
  it('HF config.json and GGUF rope_freqs give the same logits', async () => {
    // headSize 16, theta 10000: with original context 64 the pairs fall in all three bands.
    const config: ModelConfig = { ...tinyConfig({ seqLen: 128 }), ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 } }
    const model = memoryModel(config, seed)
    const vocab = spmVocabFromPieces(Array.from({ length: config.vocabSize }, (_, i) => `<t${i}>`), new Float32Array(config.vocabSize), { bosId: 1, eosId: 2, unkId: 0 })
    await writeHfModel(join(tmp.dir, 'hf'), model)
    await writeGgufModel(join(tmp.dir, 'scaled.gguf'), model, vocab)
    await writeHfModel(join(tmp.dir, 'plain'), memoryModel({ ...config, ropeScaling: undefined }, seed))
    const gguf = await openModel(join(tmp.dir, 'scaled.gguf'))
    expect(gguf.config.ropeScaling?.type).toBe('factors')
    const tokens = Array.from({ length: 100 }, (_, i) => (i * 37) % config.vocabSize)
    const a = await logits(join(tmp.dir, 'hf'), tokens)
    const b = await logits(join(tmp.dir, 'scaled.gguf'), tokens)
    const c = await logits(join(tmp.dir, 'plain'), tokens)
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5)
    let differs = 0
    for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - c[i]) > 1e-3) differs++
    expect(differs).toBeGreaterThan(a.length / 10)
  })
})
