// Direct-connection upgrader: when a connection to a swarm peer runs through a relay, try to
// replace it with a direct one, in the order that works from behind NATs in Node today:
//   1. the peer advertises a direct address (public, or UPnP-mapped and confirmed) → dial it;
//   2. we have a confirmed direct address → ask the peer to dial us (reverse dial);
//   3. libp2p's DCUtR runs as well (it cannot punch TCP holes from Node; see node/README.md).
// Relayed connections stay open: new streams prefer the direct connection once it exists.
import type { AbortOptions, Connection, Libp2pEvents, PeerId, PeerStore, Startable, Stream, TypedEventTarget } from '@libp2p/interface'
import { isPrivate } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import { requestReverseDial, reverseDialHandler, reverseDialProtocol, ReverseDialResponse } from '../protocols/index.ts'
import { IDENTIFY_WAIT_MS, REVERSE_DIAL_GRACE_MS } from './constants.ts'
import { isSwarmMember } from './membership.ts'

export interface DirectUpgraderInit {
  swarm: string
  /** Accept and send private addresses (tests on loopback). Default false. */
  acceptPrivate?: boolean
}

/** The parts of libp2p's components this service uses. */
export interface DirectUpgraderComponents {
  events: TypedEventTarget<Libp2pEvents>
  peerStore: PeerStore
  registrar: {
    handle: (protocol: string, handler: (stream: Stream, connection: Connection) => Promise<void>, options: { maxInboundStreams: number, runOnLimitedConnection: boolean }) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
  connectionManager: {
    openConnection: (peer: Multiaddr[] | PeerId, options?: AbortOptions & { force?: boolean }) => Promise<Connection>
    getConnections: (peer?: PeerId) => Connection[]
  }
  addressManager: { getAddressesWithMetadata: () => Array<{ multiaddr: Multiaddr, verified: boolean, type: string }> }
}

export type DirectEvent = { peer: string, via: 'advertised' | 'reverse-dial' | 'peer dialed us', ok: boolean, ms: number }

export class DirectUpgrader implements Startable {
  readonly protocol: string
  /** Outcome of every attempt, newest last (the daemon logs and reports them). */
  readonly attempts: DirectEvent[] = []
  private readonly components: DirectUpgraderComponents
  private readonly init: DirectUpgraderInit
  private readonly pending = new Set<string>()
  private shutdown = new AbortController()
  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const connection = evt.detail
    if (!connection.remoteAddr.toString().includes('/p2p-circuit')) return
    this.upgrade(connection.remotePeer).catch(() => {})
  }

  constructor (components: DirectUpgraderComponents, init: DirectUpgraderInit) {
    this.components = components
    this.init = init
    this.protocol = reverseDialProtocol(init.swarm)
  }

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, reverseDialHandler({
      acceptAddr: (a) => this.acceptable(a),
      dial: async (peer, addrs, options) => {
        if (this.hasDirect(peer)) return true
        const connection = await this.components.connectionManager.openConnection(addrs.map((a) => a.encapsulate(`/p2p/${peer.toString()}`)), { ...options, force: true })
        return connection.limits == null
      }
    }), { maxInboundStreams: 2, runOnLimitedConnection: true })
    this.components.events.addEventListener('connection:open', this.onOpen)
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    this.components.events.removeEventListener('connection:open', this.onOpen)
    await this.components.registrar.unhandle(this.protocol)
  }

  /** True when a direct (non-relayed) connection to `peer` is open. */
  hasDirect (peer: PeerId): boolean {
    return this.components.connectionManager.getConnections(peer).some((c) => !c.remoteAddr.toString().includes('/p2p-circuit'))
  }

  /** Tries to get a direct connection to `peer`; resolves true when one is open. */
  async upgrade (peer: PeerId, options: AbortOptions = {}): Promise<boolean> {
    const key = peer.toString()
    if (this.hasDirect(peer) || this.pending.has(key)) return this.hasDirect(peer)
    this.pending.add(key)
    const signal = options.signal == null ? this.shutdown.signal : AbortSignal.any([options.signal, this.shutdown.signal])
    try {
      const started = performance.now()
      // Identify has to tell us what the peer speaks and where it is reachable first.
      if (!await this.waitForIdentify(peer, signal)) return false
      if (!await isSwarmMember(this.components.peerStore, this.init.swarm, peer)) return false
      const record = await this.components.peerStore.get(peer)
      const advertised = record.addresses.map((a) => a.multiaddr).filter((a) => this.acceptable(a))
      if (advertised.length > 0) {
        const ok = await this.components.connectionManager.openConnection(advertised.map((a) => a.encapsulate(`/p2p/${key}`)), { signal, force: true })
          .then((c) => c.limits == null, () => false)
        this.attempts.push({ peer: key, via: 'advertised', ok, ms: performance.now() - started })
        if (ok) return true
      }
      const ours = this.components.addressManager.getAddressesWithMetadata()
        .filter((a) => a.verified && this.acceptable(a.multiaddr)).map((a) => a.multiaddr)
      if (ours.length === 0) return false
      // The peer's own upgrader sees our addresses too and usually dials first; give it a moment
      // so the two sides do not open two direct connections at once (libp2p then drops one,
      // and streams on it die).
      if (await this.waitForDirect(peer, REVERSE_DIAL_GRACE_MS, signal)) {
        this.attempts.push({ peer: key, via: 'peer dialed us', ok: true, ms: performance.now() - started })
        return true
      }
      const relayed = this.components.connectionManager.getConnections(peer).find((c) => c.status === 'open')
      if (relayed == null) return false
      const stream = await relayed.newStream(this.protocol, { signal, runOnLimitedConnection: true })
      const status = await requestReverseDial(stream, ours, { signal })
      const ok = status === ReverseDialResponse.Status.OK && this.hasDirect(peer)
      this.attempts.push({ peer: key, via: 'reverse-dial', ok, ms: performance.now() - started })
      return ok
    } finally {
      this.pending.delete(key)
    }
  }

  private acceptable (addr: Multiaddr): boolean {
    const s = addr.toString()
    if (s.includes('/p2p-circuit') || !/^\/ip[46]\//.test(s)) return false
    return this.init.acceptPrivate === true || isPrivate(addr) !== true
  }

  private async waitForDirect (peer: PeerId, ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.hasDirect(peer)) return true
    return await new Promise<boolean>((resolve) => {
      const done = (): void => {
        this.components.events.removeEventListener('connection:open', onOpen)
        signal.removeEventListener('abort', done)
        clearTimeout(timer)
        resolve(this.hasDirect(peer))
      }
      const onOpen = (evt: CustomEvent<Connection>): void => { if (evt.detail.remotePeer.equals(peer) && this.hasDirect(peer)) done() }
      const timer = setTimeout(done, ms)
      this.components.events.addEventListener('connection:open', onOpen)
      signal.addEventListener('abort', done)
    })
  }

  private async waitForIdentify (peer: PeerId, signal: AbortSignal): Promise<boolean> {
    const record = await this.components.peerStore.get(peer).catch(() => undefined)
    if (record !== undefined && record.protocols.length > 0) return true
    return await new Promise<boolean>((resolve) => {
      const done = (value: boolean): void => {
        this.components.events.removeEventListener('peer:identify', onIdentify)
        signal.removeEventListener('abort', onAbort)
        clearTimeout(timer)
        resolve(value)
      }
      const onIdentify = (evt: CustomEvent<{ peerId: PeerId }>): void => { if (evt.detail.peerId.equals(peer)) done(true) }
      const onAbort = (): void => { done(false) }
      const timer = setTimeout(() => { done(false) }, IDENTIFY_WAIT_MS)
      this.components.events.addEventListener('peer:identify', onIdentify)
      signal.addEventListener('abort', onAbort)
    })
  }
}

/** libp2p service factory. */
export function directUpgrader (init: DirectUpgraderInit): (components: DirectUpgraderComponents) => DirectUpgrader {
  return (components) => new DirectUpgrader(components, init)
}
