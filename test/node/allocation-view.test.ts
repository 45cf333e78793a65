// The allocation pass carries what a `--layers auto` node checks before it drops layers
// (sharding mayGiveUp): the ranges members' records serve, the targets they publish themselves
// (a pinned record without `layersTarget`: what it serves; `""`: none) and the plan's unavoidable
// holes — computed from real records by computeAllocation.
import { describe, expect, it } from 'vitest'
import type { NodeRecord } from '../../crdt/index.ts'
import { computeAllocation } from '../../node/allocation.ts'
import { manifestFromConfig, mayGiveUp } from '../../sharding/index.ts'
import type { AllocationView } from '../../node/allocation.ts'

const manifest = manifestFromConfig({ architecture: 'llama', dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headSize: 8, vocabSize: 512, seqLen: 512, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, qkvBias: false, bosId: 1, eosId: 2 })

function node (i: number, served: { start: number, end: number } | null, target?: string): [string, NodeRecord] {
  return [`peer-${i}`, {
    capabilities: { cores: 2, public: false, model: manifest.id, dtype: 'f32', decodeLayerMs: 0.05, prefillLayerMsPerToken: 0.04, memoryBytes: 10 * 1024 ** 2, ...(target !== undefined ? { layersTarget: target } : {}) },
    layers: served === null ? [] : [{ model: manifest.id, ...served }],
    addresses: [],
    version: '0.1.0'
  }]
}

const plan = (v: AllocationView): Parameters<typeof mayGiveUp>[0] => ({ waves: v.waves, uncovered: v.uncovered, served: v.served, target: v.assignments, published: v.published })

describe('the allocation view for the drop check', () => {
  it('served ranges, published targets (pinned: served; "": none), and a mid-move node whose holder agrees', () => {
    const nodes = new Map([
      node(1, { start: 0, end: 2 }, '2:5'), // moving to [2, 5)
      node(2, { start: 0, end: 2 }, '0:2'), // keeps [0, 2)
      node(3, { start: 2, end: 5 }) // pinned --layers 2:5
    ])
    const online = [...nodes.keys()]
    const v = computeAllocation(manifest, 'f32', nodes, online, 'peer-1', 0)
    expect(v.kept).toBe(true) // the published targets cover the model: kept
    expect(v.served).toEqual([{ peerId: 'peer-1', start: 0, end: 2 }, { peerId: 'peer-2', start: 0, end: 2 }, { peerId: 'peer-3', start: 2, end: 5 }])
    expect(v.published).toEqual([{ peerId: 'peer-1', start: 2, end: 5 }, { peerId: 'peer-2', start: 0, end: 2 }, { peerId: 'peer-3', start: 2, end: 5 }])
    expect(v.uncovered).toEqual([])
    expect(v.self).toEqual({ start: 2, end: 5 })
    expect(mayGiveUp(plan(v), 'peer-1', [0, 1])).toEqual({ ok: true })
    // peer-2 now publishes that it gives up its range: it holds nothing for peer-1 any more
    nodes.set(...node(2, { start: 0, end: 2 }, ''))
    const w = computeAllocation(manifest, 'f32', nodes, online, 'peer-1', 0)
    expect(w.published.map((a) => a.peerId)).toEqual(['peer-1', 'peer-3'])
    // coverage broke, so this is a fresh answer; in it peer-2 moves in wave 0: it holds nothing
    expect(w.kept).toBe(false)
    expect(w.waves[0].map((m) => m.peerId)).toContain('peer-2')
    expect(mayGiveUp(plan(w), 'peer-1', [0, 1])).toEqual({ ok: false, reason: 'no-holder', layers: [0, 1] })
  })
})
