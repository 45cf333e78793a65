// The node record publisher: the model's measured capability and link figures join the record;
// link figures are rounded and rewritten only when they move enough (every write is an envelope
// every replica keeps), the nearest peers only.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import pino from 'pino'
import type { NodeRecord } from '../../crdt/index.ts'
import { nodeConfig } from '../../node/config.ts'
import { MAX_PUBLISHED_LINKS, NODE_RECORD_DEBOUNCE_MS } from '../../node/constants.ts'
import type { MyceliumHost } from '../../node/host.ts'
import { startNodeRecordPublisher } from '../../node/node-record.ts'

function fakeHost (writes: NodeRecord[]): MyceliumHost {
  return {
    services: { swarmSync: { state: { setNode: async (r: NodeRecord) => { writes.push(r) } } } },
    getMultiaddrs: () => [],
    addEventListener: () => {},
    removeEventListener: () => {}
  } as unknown as MyceliumHost
}

beforeEach(() => { vi.useFakeTimers() })
afterEach(() => { vi.useRealTimers() })

describe('node record publisher', () => {
  it('publishes the model capability, rounded link figures, and rewrites links only when they move', async () => {
    const writes: NodeRecord[] = []
    const publisher = startNodeRecordPublisher(fakeHost(writes), nodeConfig({}), pino({ level: 'silent' }))
    expect(writes).toHaveLength(1)
    publisher.setModel({ model: 'abc', dtype: 'q8_0', decodeLayerMs: 0.5, prefillLayerMsPerToken: 0.1, memoryBytes: 1000 })
    publisher.setLinks(new Map([['peer-b', { rttMs: 23.456, bandwidthBytesPerS: 12_345_678 }], ['peer-a', { rttMs: 80, bandwidthBytesPerS: 3_000_000 }]]))
    await vi.advanceTimersByTimeAsync(NODE_RECORD_DEBOUNCE_MS)
    expect(writes).toHaveLength(2)
    const caps = writes[1].capabilities
    expect(caps).toMatchObject({ model: 'abc', dtype: 'q8_0', decodeLayerMs: 0.5, prefillLayerMsPerToken: 0.1, memoryBytes: 1000, 'rttMs:peer-b': 23, 'rttMs:peer-a': 80 })
    expect(caps.bandwidthBytesPerS).toBe(12_000_000) // the median of two: the upper one, two digits

    // noise (< 25 %) changes nothing, so nothing is written
    publisher.setLinks(new Map([['peer-b', { rttMs: 26, bandwidthBytesPerS: 11_000_000 }], ['peer-a', { rttMs: 70, bandwidthBytesPerS: 3_100_000 }]]))
    await vi.advanceTimersByTimeAsync(NODE_RECORD_DEBOUNCE_MS)
    expect(writes).toHaveLength(2)
    // a real move is written
    publisher.setLinks(new Map([['peer-b', { rttMs: 60, bandwidthBytesPerS: 11_000_000 }], ['peer-a', { rttMs: 70, bandwidthBytesPerS: 3_100_000 }]]))
    await vi.advanceTimersByTimeAsync(NODE_RECORD_DEBOUNCE_MS)
    expect(writes).toHaveLength(3)
    expect(writes[2].capabilities['rttMs:peer-b']).toBe(60)
    expect(writes[2].capabilities['rttMs:peer-a']).toBe(80)
    publisher.stop()
  })

  it('publishes at most the nearest MAX_PUBLISHED_LINKS peers', async () => {
    const writes: NodeRecord[] = []
    const publisher = startNodeRecordPublisher(fakeHost(writes), nodeConfig({}), pino({ level: 'silent' }))
    const links = new Map(Array.from({ length: MAX_PUBLISHED_LINKS + 10 }, (_, i) => [`peer-${String(i).padStart(3, '0')}`, { rttMs: 100 - i, bandwidthBytesPerS: 1e6 }]))
    publisher.setLinks(links)
    await vi.advanceTimersByTimeAsync(NODE_RECORD_DEBOUNCE_MS)
    const rtts = Object.keys(writes[writes.length - 1].capabilities).filter((k) => k.startsWith('rttMs:'))
    expect(rtts).toHaveLength(MAX_PUBLISHED_LINKS)
    expect(rtts).not.toContain('rttMs:peer-000') // the farthest
    expect(rtts).toContain(`rttMs:peer-0${MAX_PUBLISHED_LINKS + 9}`) // the nearest
    publisher.stop()
  })
})
