// Sessions and shards refuse bad input with typed errors and keep working afterwards; truncating
// and replaying a session rebuilds exactly the same state (what failover relies on).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { ModelSource, Shard } from '../../engine/index.ts'
import { loadShard } from '../../engine/shard.ts'
import { STORIES260K } from '../models.ts'

describe('shard sessions', () => {
  let source: ModelSource
  let first: Shard
  let last: Shard
  beforeAll(async () => {
    source = await openLlama2c(STORIES260K)
    first = await loadShard(source, { start: 0, end: 2 })
    last = await loadShard(source, { start: 2, end: 5 })
  })
  afterAll(async () => {
    await first.close()
    await last.close()
  })

  it('rejects layer ranges outside the model', async () => {
    await expect(loadShard(source, { start: 3, end: 3 })).rejects.toMatchObject({ name: 'ShardConfigError' })
    await expect(loadShard(source, { start: 0, end: 6 })).rejects.toMatchObject({ name: 'ShardConfigError' })
  })

  it('reads only the bytes of its layers (the first stage reads embedding rows on demand)', () => {
    const perLayer = ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3', 'attention_norm', 'ffn_norm']
      .reduce((n, t) => n + source.tensors.get(`layers.0.${t}`)!.byteLength, 0)
    expect(first.bytesRead).toBe(2 * perLayer)
    // The last stage holds its 3 layers, the final norm and the (tied) LM head.
    expect(last.bytesRead).toBe(3 * perLayer + source.tensors.get('norm')!.byteLength + source.tensors.get('tok_embeddings')!.byteLength)
  })

  it('refuses the wrong kind of input, bad ids, bad shapes and non-finite values', () => {
    const s1 = first.openSession()
    const s2 = last.openSession()
    expect(() => s1.step({ hidden: new Float32Array(64) })).toThrow(expect.objectContaining({ name: 'ShardConfigError' }))
    expect(() => s2.step({ tokens: [1] })).toThrow(expect.objectContaining({ name: 'ShardConfigError' }))
    expect(() => s1.step({ tokens: [512] })).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => s1.step({ tokens: [-1] })).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => s1.step({ tokens: [] })).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => s2.step({ hidden: new Float32Array(63) })).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => s2.step({ hidden: Float32Array.of(...new Array(63).fill(0), Number.NaN) })).toThrow(/not finite/)
    expect(s1.position).toBe(0)
    expect(s2.position).toBe(0)
    const h = s1.step({ tokens: [1, 403] }).hidden as Float32Array
    expect(h.length).toBe(2 * 64)
    expect((s2.step({ hidden: h }).logits as Float32Array).length).toBe(512)
  })

  it('stops at its maximum length', () => {
    const s = first.openSession({ maxLength: 3 })
    s.step({ tokens: [1, 2] })
    expect(() => s.step({ tokens: [3, 4] })).toThrow(expect.objectContaining({ name: 'SessionLimitError' }))
    s.step({ tokens: [3] })
    expect(() => first.openSession({ maxLength: 513 })).toThrow(expect.objectContaining({ name: 'SessionLimitError' }))
  })

  it('truncate + replay reproduces the same hidden states, across KV growth', () => {
    const ids = Array.from({ length: 300 }, (_, i) => 3 + (i * 37) % 500)
    const a = first.openSession()
    const full = a.step({ tokens: ids }).hidden as Float32Array
    a.truncate(100)
    const replay = a.step({ tokens: ids.slice(100) }).hidden as Float32Array
    expect(replay).toEqual(full.subarray(100 * 64))
    expect(() => a.truncate(301)).toThrow(expect.objectContaining({ name: 'SessionLimitError' }))
    a.close()
    expect(() => a.step({ tokens: [1] })).toThrow(/closed/)
  })
})

describe('aborting a load', () => {
  it('rejects with the abort reason and leaves nothing loaded', async () => {
    const source = await openLlama2c(STORIES260K)
    const controller = new AbortController()
    const pending = loadShard(source, { signal: controller.signal })
    controller.abort()
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' })
  })
})
