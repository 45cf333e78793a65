// Keeps this node's record in the replicated swarm document true: what it can do, what it serves,
// where it can be reached and which software it runs. Written at start-up and again when the
// advertised addresses change (debounced: address churn during NAT discovery is one write).
// Presence is separate: swarm-sync publishes beacons on its own timer.
import { availableParallelism, totalmem } from 'node:os'
import type { Logger } from 'pino'
import type { NodeRecord, ServedRange } from '../crdt/index.ts'
import type { NodeConfig } from './config.ts'
import { NODE_RECORD_DEBOUNCE_MS, SOFTWARE_VERSION } from './constants.ts'
import type { MyceliumHost } from './host.ts'

export interface NodeRecordPublisher {
  /** Publishes a new served layer set (the serving path calls this when it loads a shard). */
  setLayers: (layers: ServedRange[]) => void
  /** The record as last written (or being written). */
  current: () => NodeRecord
  stop: () => void
}

/** What a node publishes without a model: its hardware size and role. Measured capability joins later. */
function baseCapabilities (config: NodeConfig): NodeRecord['capabilities'] {
  return { cores: availableParallelism(), memoryBytes: totalmem(), public: config.public }
}

export function startNodeRecordPublisher (host: MyceliumHost, config: NodeConfig, log: Logger): NodeRecordPublisher {
  const state = host.services.swarmSync.state
  let layers: ServedRange[] = []
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const controller = new AbortController()
  const record = (): NodeRecord => ({
    capabilities: baseCapabilities(config),
    layers,
    addresses: host.getMultiaddrs().map(String).sort(),
    version: SOFTWARE_VERSION
  })
  let written = ''

  const write = (): void => {
    timer = undefined
    const next = record()
    const text = JSON.stringify(next)
    if (stopped || text === written) return
    written = text
    // Not awaited: with a known identity and an empty store the write waits for peers' copy of
    // our chain (swarm-sync), and start-up must not wait on the network.
    state.setNode(next, { signal: controller.signal }).then(
      () => { log.debug({ event: 'node-record', addresses: next.addresses.length, layers: next.layers.length }, 'node record written') },
      (err: Error) => {
        if (!stopped) log.warn({ event: 'node-record-failed', err: err.message }, 'could not write the node record')
      }
    )
  }
  const schedule = (): void => {
    if (stopped || timer !== undefined) return
    timer = setTimeout(write, NODE_RECORD_DEBOUNCE_MS)
  }
  host.addEventListener('self:peer:update', schedule)
  write()

  return {
    setLayers: (next) => {
      layers = next.map((r) => ({ ...r }))
      schedule()
    },
    current: record,
    stop: () => {
      stopped = true
      controller.abort()
      if (timer !== undefined) clearTimeout(timer)
      host.removeEventListener('self:peer:update', schedule)
    }
  }
}
