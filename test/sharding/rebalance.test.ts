// Rebalancing: hysteresis keeps a covering allocation, a joiner moves nobody else, a crash or a
// leave is repaired without uncovering layers when an order of moves allows it.
import { describe, expect, it } from 'vitest'
import type { Member } from '../../sharding/index.ts'
import { allocate, isCovered, rebalance } from '../../sharding/index.ts'
import { memoryFor, smallManifest } from './helpers.ts'

const m = smallManifest(16)
const node = (id: string, layers: number, decodeLayerMs = 1): Member => ({ peerId: id, capability: { decodeLayerMs, prefillLayerMsPerToken: decodeLayerMs / 10, memoryBytes: memoryFor(m, layers) } })

function withCurrent (members: Member[]): Member[] {
  const a = allocate(m, members)
  return members.map((x) => {
    const r = a.assignments.find((y) => y.peerId === x.peerId)
    return r !== undefined ? { ...x, current: { start: r.start, end: r.end } } : x
  })
}

describe('rebalance', () => {
  const swarm = withCurrent(['a', 'b', 'c', 'd', 'e', 'f'].map((id, i) => node(id, 8, 1 + i * 0.1)))

  it('keeps the current allocation when nothing changed (hysteresis)', () => {
    const r = rebalance(m, swarm)
    expect(r.kept).toBe(true)
    expect(r.waves.flat()).toEqual([])
  })

  it('slots a joiner in without moving anyone else', () => {
    const r = rebalance(m, [...swarm, node('g', 8)])
    const moved = r.waves.flat()
    expect(moved.map((x) => x.peerId)).toEqual(['g'])
    expect(r.target.covered).toBe(true)
  })

  it('repairs a crash: the target covers every layer again', () => {
    const crashed = swarm.filter((x) => x.peerId !== 'a')
    const r = rebalance(m, crashed)
    expect(r.target.covered).toBe(true)
    expect(r.uncoveredDuringMoves).toEqual([])
  })

  it('a leaving member keeps serving until the moves that replace it have landed', () => {
    const leaving = swarm.map((x) => (x.peerId === 'a' ? { ...x, leaving: true } : x))
    const r = rebalance(m, leaving)
    expect(r.target.assignments.some((x) => x.peerId === 'a')).toBe(false)
    expect(r.uncoveredDuringMoves).toEqual([])
    const waves = r.waves
    const last = waves.findIndex((w) => w.some((x) => x.peerId === 'a'))
    expect(last).toBe(waves.length - 1)
    // replay: coverage of the current layers holds in every wave
    const state = new Map(leaving.filter((x) => x.current).map((x) => [x.peerId, x.current!]))
    for (const w of waves) {
      const during = [...state].filter(([id]) => !w.some((x) => x.peerId === id)).map(([, v]) => v)
      expect(isCovered(during, m.nLayers)).toBe(true)
      for (const x of w) { if (x.to === null) state.delete(x.peerId); else state.set(x.peerId, x.to) }
    }
  })

  it('every node computes the same plan from the same membership, in any order', () => {
    const a = rebalance(m, [...swarm, node('g', 5, 2)])
    const b = rebalance(m, [node('g', 5, 2), ...[...swarm].reverse()])
    expect(JSON.stringify(b)).toBe(JSON.stringify(a))
  })
})
