// Manifest and capability from the real engine on stories260K: the content hash is stable and
// names the file content, per-layer sizes follow the config, and measurement times real decode
// and prefill steps (fast: a couple of layers, a few steps).
import { describe, expect, it } from 'vitest'
import { openModel } from '../../engine/index.ts'
import { createStepTimer, layerBytesFor, manifestFromConfig, manifestFromSource, measureCapability, memoryBudget } from '../../sharding/index.ts'
import { STORIES260K, TOK512 } from '../models.ts'

describe('manifest', () => {
  it('hashes config, tensor index and weights; the same file gives the same id', async () => {
    const source = await openModel(STORIES260K, { tokenizer: TOK512 })
    const a = await manifestFromSource(source)
    const b = await manifestFromSource(await openModel(STORIES260K, { tokenizer: TOK512 }))
    expect(a.id).toMatch(/^[0-9a-f]{64}$/)
    expect(b.id).toBe(a.id)
    const index = await manifestFromSource(source, { hash: 'index' })
    expect(index.id).not.toBe(a.id)
    expect(manifestFromConfig(source.config).id).not.toBe(a.id)
    const c = source.config
    expect(a.nLayers).toBe(c.nLayers)
    expect(a.dim).toBe(c.dim)
    expect(a.kvBytesPerTokenPerLayer).toBe(2 * c.nKvHeads * c.headSize * 4)
    expect(a.layerBytes.f32).toBe(layerBytesFor(c, 'f32'))
    expect(a.layerBytes.f16).toBeLessThan(a.layerBytes.f32)
    expect(a.layerBytes.q4_0).toBeLessThanOrEqual(a.layerBytes.q8_0)
    expect(a.embeddingBytes).toBe(c.vocabSize * c.dim * 4)
  })

  it('a changed config changes the id', () => {
    const config = { architecture: 'llama' as const, dim: 64, hiddenDim: 128, nLayers: 4, nHeads: 4, nKvHeads: 2, headSize: 16, vocabSize: 100, seqLen: 64, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, qkvBias: false, bosId: 1, eosId: 2 }
    expect(manifestFromConfig(config).id).toBe(manifestFromConfig({ ...config }).id)
    expect(manifestFromConfig({ ...config, nLayers: 5 }).id).not.toBe(manifestFromConfig(config).id)
  })
})

describe('capability', () => {
  it('times decode and prefill per layer with the real engine, and budgets memory', async () => {
    const source = await openModel(STORIES260K, { tokenizer: TOK512 })
    const cap = await measureCapability({ source, dtype: 'f32', layers: 2, decodeSteps: 4, prefillTokens: 8, freeMemoryBytes: 4e9, maxMemoryBytes: 1e9 })
    expect(cap.decodeLayerMs).toBeGreaterThan(0)
    expect(cap.prefillLayerMsPerToken).toBeGreaterThan(0)
    expect(cap.memoryBytes).toBe(1e9)
    expect(memoryBudget({ freeMemoryBytes: 1e9 })).toBe(0.8e9)
  })

  it('uses the injected clock', async () => {
    const source = await openModel(STORIES260K, { tokenizer: TOK512 })
    let t = 0
    const cap = await measureCapability({ source, layers: 2, decodeSteps: 3, prefillTokens: 4, clock: () => (t += 2), freeMemoryBytes: 1e9 })
    expect(cap.decodeLayerMs).toBe(1) // every step reads 2 ms over 2 layers
    expect(cap.prefillLayerMsPerToken).toBe(0.25)
  })

  it('can be aborted', async () => {
    const source = await openModel(STORIES260K, { tokenizer: TOK512 })
    const c = new AbortController()
    c.abort()
    await expect(measureCapability({ source, signal: c.signal })).rejects.toMatchObject({ name: 'AbortError' })
  })

  it('keeps an EWMA of live step times', () => {
    const timer = createStepTimer({ decodeLayerMs: 1, prefillLayerMsPerToken: 0.1, memoryBytes: 0 }, 0.5)
    timer.record(4, 2, 1) // 2 ms per layer
    expect(timer.decodeLayerMs).toBe(1.5)
    timer.record(8, 2, 10) // 0.4 ms per layer-token
    expect(timer.prefillLayerMsPerToken).toBeCloseTo(0.25, 12)
    timer.record(Number.NaN, 2, 1)
    expect(timer.decodeLayerMs).toBe(1.5)
  })
})
