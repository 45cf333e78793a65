// The swarm map `mycelium status` prints (renderSwarmMap): layer bars per node, nodes per layer,
// gaps named, the node table; from the JSON the daemons' control sockets answer. The command
// against real daemons is in test/testnet/testnet.test.ts; here, an error when none answers.
import { describe, expect, it } from 'vitest'
import { renderSwarmMap } from '../../node/swarm-map.ts'
import type { MapInput, MapRecord } from '../../node/swarm-map.ts'
import { runCli, scratch } from './daemons.ts'

const M = 'ab'.repeat(32)
const peer = (c: string): string => `12D3KooW${c.repeat(44)}`
const rec = (layers: Array<[number, number]>, extra: Record<string, number | string | boolean> = {}): MapRecord => ({
  capabilities: { cores: 8, memoryBytes: 4 * 1024 ** 3, dtype: 'q8_0', decodeLayerMs: 0.5, ...extra },
  layers: layers.map(([start, end]) => ({ model: M, start, end })),
  addresses: ['/ip4/10.0.0.2/tcp/4001', '/ip4/1.2.3.4/tcp/4001/p2p/x/p2p-circuit'],
  version: '0.1.0'
})

function map (nodes: Record<string, MapRecord>, online: string[], nLayers: number | null = 8): MapInput {
  return { swarm: 'demo', self: peer('A'), nodes, online, models: [{ id: M, nLayers, architecture: 'llama' }], local: [{ peerId: peer('A'), reachability: 'public', inference: { opened: 3, steps: 90, tokens: 60, sessions: 0 } }] }
}

describe('swarm map', () => {
  it('draws who serves which layers, nodes per layer, and the node table', () => {
    const text = renderSwarmMap(map({ [peer('A')]: rec([[0, 4]], { public: true }), [peer('B')]: rec([[4, 8]]), [peer('C')]: rec([[2, 6]]) }, [peer('A'), peer('B'), peer('C')]))
    expect(text).toMatch(/^swarm demo: 3 online, 3 node records/)
    expect(text).toContain(`model ${M.slice(0, 12)}… llama, 8 layers: every layer served`)
    expect(text).toMatch(/████···· {2}\[0, 4\)\n.*··████·· {2}\[2, 6\)\n.*····████ {2}\[4, 8\)/) // sorted by start
    expect(text).toMatch(/coverage +11222211 {2}nodes per layer/)
    expect(text).toMatch(/12D3KooW…AAAAAA +ababab\[0,4\) +8 cores, 4\.0 GiB, q8_0, 0\.50 ms\/layer +public +yes +60 tokens, 90 steps/)
    expect(text).toMatch(/12D3KooW…BBBBBB .* private \(relay\) +yes\s*$/m) // not asked: no counters
    expect(text).not.toMatch(/reputation/i)
  })

  it('names the layers nobody serves, and ignores offline nodes for coverage', () => {
    const text = renderSwarmMap(map({ [peer('A')]: rec([[0, 3]]), [peer('B')]: rec([[3, 8]]) }, [peer('A')]))
    expect(text).toContain('NOT covered: layers 3, 4, 5, 6, 7')
    expect(text).toMatch(/coverage +111✗✗✗✗✗/)
    expect(text).toMatch(/12D3KooW…BBBBBB .* no\s*$/m)
  })

  it('a model with many layers keeps the bar short', () => {
    const text = renderSwarmMap(map({ [peer('A')]: rec([[0, 40]]), [peer('B')]: rec([[40, 80]]) }, [peer('A'), peer('B')], 80))
    const bar = /coverage +(\S+)/.exec(text)![1]
    expect(bar).toHaveLength(48)
    expect(bar).toBe('1'.repeat(48))
  })

  it('no served column when no daemon was asked (an observer sees no counters)', () => {
    const text = renderSwarmMap({ ...map({ [peer('A')]: rec([[0, 8]]) }, [peer('A')]), local: [] })
    expect(text).toMatch(/^ {2}peer +layers +capability +reachability +online$/m)
    expect(text).not.toMatch(/served:|tokens, \d+ steps/)
  })

  it('without a manifest the layer count is a lower bound, and says so', () => {
    expect(renderSwarmMap(map({ [peer('A')]: rec([[0, 3]]) }, [peer('A')], null))).toContain('3 layers (at least; no manifest yet)')
  })

  it('status with no daemon running: one line saying how to start one', () => {
    const r = runCli(['status', '--data-dir', scratch('mycelium-status-')])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^mycelium: no daemon answers in .* start one with `mycelium node start` or point --data-dir at its data directory\n$/)
  })
})
