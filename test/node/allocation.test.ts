// The daemon's allocation pass is a pure function of the replicated records: the same records in
// any order give the same answer; membership keeps only online nodes offering the same model in
// the same dtype; RTTs come from what members publish about each other.
import { describe, expect, it } from 'vitest'
import type { NodeRecord } from '../../crdt/index.ts'
import { manifestFromConfig } from '../../sharding/index.ts'
import { computeAllocation, membersFromRecords, rttFromRecords, targetFromRecord } from '../../node/allocation.ts'
import { seededRandom, testSeed } from '../seed.ts'

const manifest = manifestFromConfig({ architecture: 'llama', dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headSize: 8, vocabSize: 512, seqLen: 512, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, qkvBias: false, bosId: 1, eosId: 2 })

function record (caps: NodeRecord['capabilities'], layers: NodeRecord['layers'] = []): NodeRecord {
  return { capabilities: caps, layers, addresses: [], version: '0.1.0' }
}

function node (i: number, extra: NodeRecord['capabilities'] = {}): [string, NodeRecord] {
  return [`peer-${i}`, record({ cores: 2, public: false, model: manifest.id, dtype: 'f32', decodeLayerMs: 0.05 + i * 0.01, prefillLayerMsPerToken: 0.04 + i * 0.005, memoryBytes: 10 * 1024 ** 2, ...extra })]
}

describe('allocation from the replicated records', () => {
  it('gives the same allocation for the records in any order', () => {
    const entries = [node(1), node(2), node(3), node(4)]
    const online = entries.map(([id]) => id)
    const reference = computeAllocation(manifest, 'f32', new Map(entries), online, 'peer-1', 0)
    expect(reference.covered).toBe(true)
    const seed = testSeed()
    const rand = seededRandom(seed)
    for (let k = 0; k < 20; k++) {
      const shuffled = [...entries].sort(() => rand() - 0.5)
      const again = computeAllocation(manifest, 'f32', new Map(shuffled), [...online].sort(() => rand() - 0.5), 'peer-1', 0)
      expect(again.assignments, `repro: TEST_SEED=${seed} npx vitest run test/node/allocation.test.ts`).toEqual(reference.assignments)
    }
  })

  it('counts only online members offering the same model in the same dtype with valid figures', () => {
    const nodes = new Map([
      node(1), node(2),
      node(3, { dtype: 'q8_0' }),
      node(4, { model: 'another' }),
      node(5, { decodeLayerMs: 0 }),
      node(6),
      ['peer-7', record({ cores: 2, public: true })]
    ])
    const members = membersFromRecords(nodes, ['peer-6', 'peer-2', 'peer-1', 'peer-3', 'peer-4', 'peer-5', 'peer-7'], manifest, 'f32')
    expect(members.map((m) => m.peerId)).toEqual(['peer-1', 'peer-2', 'peer-6'])
    const offline = membersFromRecords(nodes, ['peer-1'], manifest, 'f32')
    expect(offline.map((m) => m.peerId)).toEqual(['peer-1'])
  })

  it('reads current ranges and published RTTs (mean of both sides)', () => {
    const [id1, r1] = node(1, { 'rttMs:peer-2': 10 })
    const [id2, r2] = node(2, { 'rttMs:peer-1': 20, 'rttMs:peer-3': 7 })
    r1.layers = [{ model: manifest.id, start: 0, end: 3 }, { model: 'other', start: 0, end: 1 }]
    r2.layers = [{ model: manifest.id, start: 3, end: 9 }] // outside the model: ignored
    const nodes = new Map([[id1, r1], [id2, r2]])
    const members = membersFromRecords(nodes, [id1, id2], manifest, 'f32')
    expect(members[0].current).toEqual({ start: 0, end: 3 })
    expect(members[1].current).toBeUndefined()
    const rtt = rttFromRecords(nodes)
    expect(rtt(id1, id2)).toBe(15)
    expect(rtt(id2, 'peer-3')).toBe(7)
    expect(rtt('peer-3', id2)).toBe(7)
    expect(rtt(id1, 'peer-3')).toBeUndefined()
  })

  it('keeps a covering assignment (hysteresis) and says which range is ours', () => {
    const entries = [node(1), node(2), node(3)]
    const first = computeAllocation(manifest, 'f32', new Map(entries), entries.map(([id]) => id), 'peer-2', 0)
    expect(first.mode).toBe('allocate')
    for (const [id, r] of entries) {
      const a = first.assignments.find((x) => x.peerId === id)!
      r.layers = [{ model: manifest.id, start: a.start, end: a.end }]
    }
    const second = computeAllocation(manifest, 'f32', new Map(entries), entries.map(([id]) => id), 'peer-2', 0)
    expect(second.mode).toBe('rebalance')
    expect(second.assignments).toEqual(first.assignments)
    expect(second.self).toEqual({ start: first.assignments[1].start, end: first.assignments[1].end })
  })

  it('rebalances from the published targets and plans the waves from the served ranges', () => {
    const entries = [node(1), node(2), node(3)]
    const first = computeAllocation(manifest, 'f32', new Map(entries), entries.map(([id]) => id), 'peer-2', 0)
    // every node publishes its target; nobody has loaded it yet (serves nothing)
    for (const [id, r] of entries) {
      const a = first.assignments.find((x) => x.peerId === id)!
      r.capabilities.layersTarget = `${a.start}:${a.end}`
    }
    expect(targetFromRecord(entries[0][1], manifest)).toEqual({ start: first.assignments[0].start, end: first.assignments[0].end })
    const pending = computeAllocation(manifest, 'f32', new Map(entries), entries.map(([id]) => id), 'peer-2', 0)
    expect(pending.mode).toBe('rebalance')
    expect(pending.assignments).toEqual(first.assignments) // the targets are kept: nothing is re-decided
    expect(pending.waves.flat().map((m) => m.peerId).sort()).toEqual(['peer-1', 'peer-2', 'peer-3']) // all still to land
    // once each serves its target, no move is left
    for (const [id, r] of entries) {
      const a = first.assignments.find((x) => x.peerId === id)!
      r.layers = [{ model: manifest.id, start: a.start, end: a.end }]
    }
    expect(computeAllocation(manifest, 'f32', new Map(entries), entries.map(([id]) => id), 'peer-2', 0).waves).toEqual([])
    // a half-done move is not kept as the goal: peer-1 still serves an old range, its target stands
    entries[0][1].layers = [{ model: manifest.id, start: 0, end: 5 }]
    const half = computeAllocation(manifest, 'f32', new Map(entries), entries.map(([id]) => id), 'peer-2', 0)
    expect(half.assignments).toEqual(first.assignments)
    expect(half.waves.flat()).toEqual([{ peerId: 'peer-1', from: { start: 0, end: 5 }, to: { start: first.assignments[0].start, end: first.assignments[0].end } }])
    // malformed or outside the model: not a target; "" is "none"
    for (const bad of ['x', '3:2', '0:9', '1:2:3', 7]) expect(targetFromRecord(record({ layersTarget: bad }), manifest)).toBeUndefined()
    expect(targetFromRecord(record({ layersTarget: '' }), manifest)).toBeNull()
  })

  it('a record without layersTarget (--layers a:b) is pinned: the allocation keeps it where it is', () => {
    const [id1, r1] = node(1, { layersTarget: '' })
    const [id2, r2] = node(2)
    const [id3, r3] = node(3, { layersTarget: '0:5' })
    r2.layers = [{ model: manifest.id, start: 1, end: 3 }]
    r3.layers = [{ model: manifest.id, start: 0, end: 5 }]
    const nodes = new Map([[id1, r1], [id2, r2], [id3, r3]])
    const members = membersFromRecords(nodes, [id1, id2, id3], manifest, 'f32')
    expect(members.map((x) => x.pinned === true)).toEqual([false, true, false])
    const view = computeAllocation(manifest, 'f32', nodes, [id1, id2, id3], id2, 0)
    expect(view.self).toEqual({ start: 1, end: 3 })
    expect(view.pinned).toEqual([id2])
    expect(view.waves.flat().some((x) => x.peerId === id2)).toBe(false)
    expect(view.covered).toBe(true)
  })
})
