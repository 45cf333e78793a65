// Keeps this node's record in the replicated swarm document true: what it can do, what it serves,
// where it can be reached and which software it runs. Written at start-up and again when the
// advertised addresses, the measured model capability, the link estimates or the assigned layers
// change (debounced: address churn during NAT discovery is one write). Link figures (RTT per peer,
// bandwidth) are rewritten only when they move by more than LINK_REPUBLISH_FRACTION: every write
// is an envelope that every replica keeps, within an 8 MiB quota per writer.
// Presence is separate: swarm-sync publishes beacons on its own timer.
import { availableParallelism, totalmem } from 'node:os'
import type { Logger } from 'pino'
import type { NodeRecord, ServedRange } from '../crdt/index.ts'
import type { NodeConfig } from './config.ts'
import { LINK_REPUBLISH_FRACTION, LINK_REPUBLISH_MIN_MS, MAX_PUBLISHED_LINKS, NODE_RECORD_DEBOUNCE_MS, RTT_CAPABILITY_PREFIX, SOFTWARE_VERSION } from './constants.ts'
import type { MyceliumHost } from './host.ts'

/** What a node that offers a model publishes about it (measured at start-up). */
export interface ModelCapabilities {
  /** Manifest id of the model. */
  model: string
  dtype: string
  decodeLayerMs: number
  prefillLayerMsPerToken: number
  /** The memory budget for weights and KV cache (replaces the machine's total memory). */
  memoryBytes: number
}

/** A measured link, as the probe service keeps it. */
export interface LinkEstimate { rttMs: number, bandwidthBytesPerS: number }

export interface NodeRecordPublisher {
  /**
   * Publishes the layers this node serves and, for `--layers auto`, the allocator's range for it
   * (the `layersTarget` capability, "start:end" or "" — see allocation.ts); undefined: no target.
   */
  setLayers: (layers: ServedRange[], target?: string) => void
  /** Publishes the model this node offers and its measured capability. */
  setModel: (model: ModelCapabilities) => void
  /**
   * Publishes the model a judge-only node (`--judge-model`, no layers) holds: the `judgeModel`
   * capability (its manifest id). Round owners ask such a node to verify stages of that model
   * (client/consensus-audit.ts) and calibrators check its judging on it.
   */
  setJudgeModel: (manifestId: string) => void
  /** Folds the probe service's estimates in: RTT per peer and a bandwidth figure, with hysteresis. */
  setLinks: (links: ReadonlyMap<string, LinkEstimate>) => void
  /** The record as last written (or being written). */
  current: () => NodeRecord
  stop: () => void
}

/** What a node publishes without a model: its hardware size and role. Measured capability joins later. */
function baseCapabilities (config: NodeConfig): NodeRecord['capabilities'] {
  return { cores: availableParallelism(), memoryBytes: totalmem(), public: config.public }
}

/** Two significant digits: published figures do not change with measurement noise. */
function round2 (x: number): number {
  return Number(x.toPrecision(2))
}

export function startNodeRecordPublisher (host: MyceliumHost, config: NodeConfig, log: Logger): NodeRecordPublisher {
  const state = host.services.swarmSync.state
  let layers: ServedRange[] = []
  let target: string | undefined
  let model: ModelCapabilities | undefined
  let judgeModel: string | undefined
  let rtts = new Map<string, number>()
  let bandwidth: number | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const controller = new AbortController()
  const record = (): NodeRecord => ({
    capabilities: {
      ...baseCapabilities(config),
      ...(model !== undefined ? { ...model } : {}),
      ...(judgeModel !== undefined ? { judgeModel } : {}),
      ...(bandwidth !== undefined ? { bandwidthBytesPerS: bandwidth } : {}),
      ...(target !== undefined ? { layersTarget: target } : {}),
      ...Object.fromEntries([...rtts].map(([peer, ms]) => [`${RTT_CAPABILITY_PREFIX}${peer}`, ms]))
    },
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
    setLayers: (next, nextTarget) => {
      layers = next.map((r) => ({ ...r }))
      target = nextTarget
      schedule()
    },
    setModel: (next) => {
      model = { ...next }
      schedule()
    },
    setJudgeModel: (id) => {
      judgeModel = id
      schedule()
    },
    setLinks: (links) => {
      const moved = (old: number | undefined, now: number, minAbs: number): boolean =>
        old === undefined || (Math.abs(now - old) > LINK_REPUBLISH_FRACTION * old && Math.abs(now - old) > minAbs)
      // the nearest peers, sorted by peer id so the record's text is canonical
      const nearest = [...links].filter(([, l]) => l.rttMs >= 0).sort((a, b) => a[1].rttMs - b[1].rttMs || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_PUBLISHED_LINKS)
      const next = new Map<string, number>()
      let changed = nearest.length !== rtts.size || nearest.some(([peer]) => !rtts.has(peer))
      for (const [peer, l] of nearest) {
        const old = rtts.get(peer)
        if (moved(old, l.rttMs, LINK_REPUBLISH_MIN_MS)) changed = true
        next.set(peer, moved(old, l.rttMs, LINK_REPUBLISH_MIN_MS) ? round2(l.rttMs) : old as number)
      }
      // our bandwidth figure: the median of the measured links (one slow peer does not define us)
      const bws = nearest.map(([, l]) => l.bandwidthBytesPerS).filter((b) => b > 0).sort((a, b) => a - b)
      const median = bws.length === 0 ? undefined : bws[bws.length >> 1]
      if (median !== undefined && moved(bandwidth, median, 0)) { bandwidth = round2(median); changed = true }
      rtts = new Map([...next].sort((a, b) => (a[0] < b[0] ? -1 : 1)))
      if (changed) schedule()
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
