// The probe service: answers /mycelium/probe/1 and measures RTT and bandwidth to peers, keeping
// an estimate per peer fresh (every PROBE_INTERVAL_MS for connected peers). A node publishes
// these in the swarm state; the router and allocator read them from there.
//
// RTT is the minimum over the last PROBE_RTT_WINDOW probes, not an average: what inflates a
// round trip — a busy event loop on either end, queues — only ever adds delay, and the router
// costs load separately (sharding/router.ts), so counting it here too would double-charge it and
// let one probe taken during a start-up burst stand for minutes. Bandwidth is an EWMA.
//
//   services: { probe: probeService() }   then   await libp2p.services.probe.probe(peerId)
import type { AbortOptions, ComponentLogger, Logger, PeerId, Startable, Stream } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import { probeOver, serveProbe } from './probe.ts'
import type { ProbeMeasurement, ProbeOptions } from './probe.ts'
import { PROBE_EWMA_ALPHA, PROBE_HANDLER_TIMEOUT_MS, PROBE_INTERVAL_MS, PROBE_MAX_INBOUND_STREAMS, PROBE_MAX_PAYLOAD_BYTES, PROBE_MAX_PEERS, PROBE_PROTOCOL, PROBE_RTT_WINDOW, PROBE_TIMEOUT_MS } from './constants.ts'
import { ProbeFailedError } from './errors.ts'

export interface ProbeServiceInit {
  /** Largest payload served either way (default PROBE_MAX_PAYLOAD_BYTES). */
  maxPayloadBytes?: number
  /** Deadline of an inbound stream (default PROBE_HANDLER_TIMEOUT_MS) and of a probe (PROBE_TIMEOUT_MS). */
  handlerTimeoutMs?: number
  probeTimeoutMs?: number
  /** Re-probe connected peers this often (default PROBE_INTERVAL_MS); 0 disables. */
  intervalMs?: number
  /** Probe shape (pings, bulk bytes) and clock. */
  probe?: Omit<ProbeOptions, 'signal'>
  /** Wall clock for `measuredAt` (default Date.now). */
  now?: () => number
}

/** The part of libp2p's registrar the service uses. */
export interface ProbeRegistrar {
  handle: (protocol: string, handler: (stream: Stream) => Promise<void>, options: { maxInboundStreams: number, runOnLimitedConnection: boolean }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
}

export interface ProbeServiceComponents {
  registrar: ProbeRegistrar
  connectionManager: Pick<ConnectionManager, 'openStream' | 'getConnections'>
  logger: ComponentLogger
}

/** A peer's link estimate: RTT the least of the recent probes', bandwidth smoothed. */
export interface ProbeResult extends ProbeMeasurement {
  /** `now()` of the latest probe. */
  measuredAt: number
  samples: number
}

export class ProbeService implements Startable {
  readonly protocol = PROBE_PROTOCOL
  readonly stats = { served: 0, refused: 0, probes: 0, failures: 0 }
  private readonly components: ProbeServiceComponents
  private readonly init: ProbeServiceInit
  private readonly log: Logger
  private readonly links = new Map<string, ProbeResult>()
  /** The RTTs of each peer's last PROBE_RTT_WINDOW probes, oldest first. */
  private readonly rtts = new Map<string, number[]>()
  private shutdown = new AbortController()
  private timer: ReturnType<typeof setInterval> | undefined

  readonly [Symbol.toStringTag] = 'mycelium/probe'

  constructor (components: ProbeServiceComponents, init: ProbeServiceInit = {}) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('mycelium:protocols:probe')
  }

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, async (stream) => {
      const r = await serveProbe(stream, { maxPayloadBytes: this.init.maxPayloadBytes ?? PROBE_MAX_PAYLOAD_BYTES, timeoutMs: this.init.handlerTimeoutMs ?? PROBE_HANDLER_TIMEOUT_MS, signal: this.shutdown.signal })
      this.stats.served += r.requests
      if (r.status !== 'OK' && r.status !== 'CLOSED') {
        this.stats.refused++
        this.log('probe stream ended with %s after %d requests', r.status, r.requests)
      }
    }, {
      maxInboundStreams: PROBE_MAX_INBOUND_STREAMS,
      // the bulk round trip would eat a relayed circuit's data allowance
      runOnLimitedConnection: false
    })
    const every = this.init.intervalMs ?? PROBE_INTERVAL_MS
    if (every > 0) this.timer = setInterval(() => { void this.refresh() }, every)
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    await this.components.registrar.unhandle(this.protocol)
  }

  /** Measures the link to `peer` now and folds it into the peer's estimate. */
  async probe (peer: PeerId, options: AbortOptions = {}): Promise<ProbeResult> {
    const deadline = AbortSignal.timeout(this.init.probeTimeoutMs ?? PROBE_TIMEOUT_MS)
    const signal = AbortSignal.any([deadline, this.shutdown.signal, ...(options.signal != null ? [options.signal] : [])])
    this.stats.probes++
    let m: ProbeMeasurement
    try {
      const stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal })
      m = await probeOver(stream, { ...this.init.probe, signal })
    } catch (err) {
      this.stats.failures++
      if (err instanceof ProbeFailedError) throw err
      throw new ProbeFailedError(`could not probe ${peer.toString()}`, { cause: err })
    }
    const key = peer.toString()
    const prev = this.links.get(key)
    const recent = [...(this.rtts.get(key) ?? []), m.rttMs].slice(-PROBE_RTT_WINDOW)
    // most recently probed last; beyond PROBE_MAX_PEERS the longest unprobed peer is forgotten
    this.rtts.delete(key)
    this.rtts.set(key, recent)
    this.links.delete(key)
    for (const old of this.rtts.keys()) {
      if (this.rtts.size <= PROBE_MAX_PEERS) break
      this.rtts.delete(old)
      this.links.delete(old)
    }
    const a = PROBE_EWMA_ALPHA
    const next: ProbeResult = {
      rttMs: Math.min(...recent),
      bandwidthBytesPerS: prev === undefined ? m.bandwidthBytesPerS : m.bandwidthBytesPerS > 0 ? prev.bandwidthBytesPerS + a * (m.bandwidthBytesPerS - prev.bandwidthBytesPerS) : prev.bandwidthBytesPerS,
      measuredAt: (this.init.now ?? Date.now)(),
      samples: (prev?.samples ?? 0) + 1
    }
    this.links.set(key, next)
    return next
  }

  /** The estimate for a peer, if it was probed. */
  result (peer: PeerId | string): ProbeResult | undefined {
    return this.links.get(peer.toString())
  }

  /** Every peer's estimate, keyed by peer id. */
  results (): ReadonlyMap<string, ProbeResult> {
    return this.links
  }

  /** Probes every connected peer once, one at a time; failures are counted and logged. */
  async refresh (): Promise<void> {
    const peers = new Map<string, PeerId>()
    for (const c of this.components.connectionManager.getConnections()) peers.set(c.remotePeer.toString(), c.remotePeer)
    for (const peer of [...peers.values()].sort((a, b) => (a.toString() < b.toString() ? -1 : 1))) {
      if (this.shutdown.signal.aborted) return
      try {
        await this.probe(peer)
      } catch (err) {
        this.log('probe of %p failed: %s', peer, (err as Error).message)
      }
    }
  }
}

/** libp2p service factory: `services: { probe: probeService() }`. */
export function probeService (init: ProbeServiceInit = {}): (components: ProbeServiceComponents) => ProbeService {
  return (components) => new ProbeService(components, init)
}
