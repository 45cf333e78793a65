// The node record publisher writes a change of the served layers or the layer target at once
// (other nodes plan their moves on them; node/serving.ts FOLLOW_ALLOCATION_SETTLE_MS counts on
// it), while other changes wait for the debounce.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import pino from 'pino'
import type { NodeRecord } from '../../crdt/index.ts'
import { nodeConfig } from '../../node/config.ts'
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

describe('node record publisher: layers', () => {
  it('writes served layers and the target at once, with what else was pending; nothing when unchanged', async () => {
    const writes: NodeRecord[] = []
    const publisher = startNodeRecordPublisher(fakeHost(writes), nodeConfig({}), pino({ level: 'silent' }))
    expect(writes).toHaveLength(1)
    publisher.setModel({ model: 'abc', dtype: 'f32', decodeLayerMs: 0.5, prefillLayerMsPerToken: 0.1, memoryBytes: 1000 })
    expect(writes).toHaveLength(1) // debounced
    publisher.setLayers([{ model: 'abc', start: 0, end: 2 }], '2:5')
    expect(writes).toHaveLength(2) // at once, the pending model change with it
    expect(writes[1].layers).toEqual([{ model: 'abc', start: 0, end: 2 }])
    expect(writes[1].capabilities).toMatchObject({ model: 'abc', layersTarget: '2:5' })
    await vi.advanceTimersByTimeAsync(10_000)
    expect(writes).toHaveLength(2) // the cancelled debounce writes nothing more
    publisher.setLayers([{ model: 'abc', start: 0, end: 2 }], '2:5')
    expect(writes).toHaveLength(2) // unchanged: no envelope
    publisher.setLayers([], '2:5')
    expect(writes).toHaveLength(3)
    publisher.stop()
  })
})
