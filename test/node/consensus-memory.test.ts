// Issue 7: the judge's copies in a node's capacity accounting (node/consensus-judge.ts
// consensusMemory), with the real figures of stories260K's manifest: a judging node holds its
// whole-model judge, a calibrator's copy of a subject's range and a verifier's cached range beside
// its layers, so it advertises its budget less those; a node near its memory limit keeps its layers
// and does not judge. Never an over-commit: layers (with their KV reserve) + copies ≤ the budget.
import { statSync } from 'node:fs'
import { beforeAll, describe, expect, it } from 'vitest'
import { JUDGE_MAX_MODEL_BYTES, consensusMemory, judgeBudgetBytes, wholeModelBytes } from '../../node/consensus-judge.ts'
import { openModel } from '../../engine/index.ts'
import { layerCapacity, manifestFromSource, type ModelManifest } from '../../sharding/index.ts'
import { KV_RESERVE_TOKENS, MEMORY_OVERHEAD_FRACTION } from '../../sharding/constants.ts'
import { STORIES260K } from '../models.ts'

const MiB = 1024 ** 2
let manifest: ModelManifest
const capacity = (memoryBytes: number): number => layerCapacity(manifest, { decodeLayerMs: 1, prefillLayerMsPerToken: 1, memoryBytes }, { dtype: 'f32' })
const perLayer = (): number => manifest.layerBytes.f32 + KV_RESERVE_TOKENS * manifest.kvBytesPerTokenPerLayer

beforeAll(async () => {
  manifest = await manifestFromSource(await openModel(STORIES260K))
})

describe('consensusMemory (issue 7): the judge, calibration and verifier copies in the advertised memory', () => {
  it('the judge copy is the real model\'s weights: the llama2.c file holds them as f32 (header and tied head aside)', () => {
    const whole = wholeModelBytes(manifest, 'f32')
    const file = statSync(STORIES260K).size
    expect(whole).toBe(manifest.nLayers * manifest.layerBytes.f32 + manifest.embeddingBytes + manifest.headBytes)
    expect(whole).toBeLessThanOrEqual(file)
    expect(whole).toBeGreaterThan(0.95 * file) // 1,039,872 of 1,056,540 bytes (the rest: header, RoPE tables)
    expect(wholeModelBytes(manifest, 'q8_0')).toBeLessThan(whole)
  })

  it('a roomy node judges and advertises its budget less 3 copies (judge + calibration + verifier), keeping every layer', () => {
    const whole = wholeModelBytes(manifest, 'f32')
    const m = consensusMemory(manifest, 'f32', { budgetBytes: 256 * MiB })
    expect(m).toEqual({ judging: true, judgeBytes: whole, calibrationBytes: whole, verifierBytes: whole, reserveBytes: 3 * whole, advertisedBytes: 256 * MiB - 3 * whole })
    expect(capacity(m.advertisedBytes)).toBe(manifest.nLayers)
  })

  it('a q4_0 node: judge and verifier copies in q4_0, the calibration copy up to f32 (it is loaded in the subject\'s dtype)', () => {
    const q4 = wholeModelBytes(manifest, 'q4_0')
    const m = consensusMemory(manifest, 'q4_0', { budgetBytes: 256 * MiB })
    expect(m).toMatchObject({ judging: true, judgeBytes: q4, calibrationBytes: wholeModelBytes(manifest, 'f32'), verifierBytes: q4 })
    expect(m.reserveBytes).toBe(2 * q4 + wholeModelBytes(manifest, 'f32'))
  })

  it('near its memory limit a node keeps its layers and does not judge (10 MiB: 2 layers either way; the copies would cost one)', () => {
    const m = consensusMemory(manifest, 'f32', { budgetBytes: 10 * MiB, maxMemoryBytes: 10 * MiB })
    expect(capacity(10 * MiB)).toBe(2)
    expect(capacity(10 * MiB - 3 * wholeModelBytes(manifest, 'f32'))).toBe(1) // why it does not judge
    expect(m).toMatchObject({ judging: false, reserveBytes: 0, advertisedBytes: 10 * MiB })
  })

  it('the threshold: the smallest budget holding every layer does not judge; that budget plus the copies does', () => {
    const reserve = 3 * wholeModelBytes(manifest, 'f32')
    const tight = Math.ceil(manifest.nLayers * perLayer() / (1 - MEMORY_OVERHEAD_FRACTION)) + 1
    expect(capacity(tight)).toBe(manifest.nLayers)
    expect(consensusMemory(manifest, 'f32', { budgetBytes: tight }).judging).toBe(false)
    const roomy = consensusMemory(manifest, 'f32', { budgetBytes: tight + reserve })
    expect(roomy).toMatchObject({ judging: true, reserveBytes: reserve, advertisedBytes: tight })
  })

  it('never over-commits: on a sweep of budgets, the layers the allocator can give (with their KV reserve) plus the copies fit the budget', () => {
    for (let budget = 1 * MiB; budget <= 64 * MiB; budget += MiB / 4) {
      const m = consensusMemory(manifest, 'f32', { budgetBytes: budget })
      const layers = capacity(m.advertisedBytes)
      expect(layers).toBe(capacity(budget)) // layers first: judging never costs a layer
      expect(layers * perLayer() + m.reserveBytes).toBeLessThanOrEqual(budget)
      if (m.judging) expect(m.advertisedBytes).toBe(budget - m.reserveBytes)
      else expect(m.advertisedBytes).toBe(budget)
    }
  })

  it('a pinned range (--layers a:b) is what must fit; --max-memory caps the judge at a quarter; past 256 MiB nobody judges', () => {
    expect(consensusMemory(manifest, 'f32', { budgetBytes: 10 * MiB, servedLayers: 1 }).judging).toBe(true) // 1 layer + copies fit in 10 MiB
    expect(consensusMemory(manifest, 'f32', { budgetBytes: 10 * MiB, servedLayers: 2 }).judging).toBe(false)
    expect(judgeBudgetBytes()).toBe(JUDGE_MAX_MODEL_BYTES)
    expect(judgeBudgetBytes(4 * MiB)).toBe(MiB)
    // a quarter of 3 MiB is less than the 1,039,872-byte model: no judge, whatever the layers
    expect(consensusMemory(manifest, 'f32', { budgetBytes: 256 * MiB, maxMemoryBytes: 3 * MiB }).judging).toBe(false)
    // the same shapes scaled past JUDGE_MAX_MODEL_BYTES (a 64 × wider model): too large to judge
    const big: ModelManifest = { ...manifest, layerBytes: { ...manifest.layerBytes, f32: manifest.layerBytes.f32 * 64 * 64 }, embeddingBytes: manifest.embeddingBytes * 64 * 64 }
    expect(wholeModelBytes(big, 'f32')).toBeGreaterThan(JUDGE_MAX_MODEL_BYTES)
    const m = consensusMemory(big, 'f32', { budgetBytes: 64 * 1024 * MiB })
    expect(m).toMatchObject({ judging: false, reserveBytes: 0, verifierBytes: JUDGE_MAX_MODEL_BYTES })
  })
})
