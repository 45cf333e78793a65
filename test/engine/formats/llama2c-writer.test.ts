// The llama2.c v0 writer: what it writes openLlama2c reads back exactly (untied classifier →
// negative vocab_size and wcls after freq_cis), and configs the format cannot hold are refused.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../../engine/formats/llama2c.ts'
import { writeLlama2c } from '../../../engine/formats/llama2c-writer.ts'
import { testSeed } from '../../seed.ts'
import { expectFormatError, memoryModel, readAllTensors, tempDir, tinyConfig } from './fixtures.ts'

const seed = testSeed()
const tmp = tempDir('llama2c-writer')
afterAll(tmp.cleanup)

describe(`llama2.c writer (TEST_SEED=${seed})`, () => {
  it.each([false, true])('round-trips a model exactly (tied embeddings: %s)', async (tied) => {
    const config = tinyConfig({ tiedEmbeddings: tied })
    const model = memoryModel(config, seed)
    const file = join(tmp.dir, `model-${String(tied)}.bin`)
    await writeLlama2c(file, model)
    expect(readFileSync(file).readInt32LE(20)).toBe(tied ? 400 : -400)
    const src = await openLlama2c(file)
    expect(src.config).toEqual(config)
    const got = readAllTensors(src)
    expect([...got.keys()].sort()).toEqual([...model.values.keys()].sort())
    for (const [name, values] of model.values) expect(got.get(name), name).toEqual(values)
  })

  it('refuses configs llama2.c cannot represent', async () => {
    const file = join(tmp.dir, 'qwen.bin')
    const qwen = tinyConfig({ architecture: 'qwen2', qkvBias: true })
    await expectFormatError(writeLlama2c(file, memoryModel(qwen, seed)), file, /no q\/k\/v biases/)
    await expectFormatError(writeLlama2c(file, memoryModel(tinyConfig({ ropeTheta: 5e5 }), seed)), file, /rope_theta at 10000, model has 500000/)
  })
})
