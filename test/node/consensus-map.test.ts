// The reputation column of `mycelium status` (renderSwarmMap with a daemon's ledger, issue 7):
// admitted nodes with their vote weight, excluded ones marked, unknown ones not admitted; no
// column when the map came without a ledger.
import { describe, expect, it } from 'vitest'
import { renderSwarmMap } from '../../node/swarm-map.ts'
import type { MapInput } from '../../node/swarm-map.ts'

const M = 'cd'.repeat(32)
const peer = (c: string): string => `12D3KooW${c.repeat(44)}`
const rec = (start: number, end: number): MapInput['nodes'][string] => ({ capabilities: { cores: 2 }, layers: [{ model: M, start, end }], addresses: [], version: '0.1.0' })

function input (reputation?: MapInput['reputation']): MapInput {
  return {
    swarm: 'demo',
    self: peer('A'),
    nodes: { [peer('A')]: rec(0, 2), [peer('B')]: rec(2, 4), [peer('C')]: rec(0, 4) },
    online: [peer('A'), peer('B'), peer('C')],
    models: [{ id: M, nLayers: 4 }],
    local: [],
    ...(reputation !== undefined ? { reputation } : {})
  }
}

describe('swarm map reputation column', () => {
  it('shows admitted weights, EXCLUDED and not admitted', () => {
    const text = renderSwarmMap(input({ [peer('A')]: { admitted: true, excluded: false, weight: 0.25 }, [peer('B')]: { admitted: true, excluded: true, weight: 0 } }))
    const line = (p: string): string => text.split('\n').filter((l) => l.includes(p.slice(-6))).at(-1) ?? '' // the node table's row
    expect(text).toMatch(/online\s+reputation/)
    expect(line(peer('A'))).toContain('admitted, w 0.25')
    expect(line(peer('B'))).toContain('EXCLUDED')
    expect(line(peer('C'))).toContain('not admitted')
  })
  it('no column without a ledger', () => {
    expect(renderSwarmMap(input())).not.toMatch(/reputation/i)
  })
})
