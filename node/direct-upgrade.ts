// Direct-connection upgrader: when a connection to a swarm peer runs through a relay, try to
// replace it with a direct one, in the order that works from behind NATs in Node today:
//   1. the peer advertises a direct address (public, or UPnP-mapped and confirmed) → dial it;
//   2. we have a confirmed direct address → ask the peer to dial us (reverse dial);
//   3. both sides behind port-preserving NATs → TCP hole punch (hole-punch protocol: swap
//      external ip:port over the relay, connect from a fresh port at the same time);
//   4. libp2p's DCUtR only with --dcutr (it cannot punch from Node and closes relayed connections
//      under live streams; see node/README.md).
// Relayed connections stay open: new streams prefer the direct connection once it exists.
import type { AbortOptions, ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, PeerStore, Startable, Stream, TypedEventTarget, Upgrader } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { isPrivate } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import { holePunchHandler, holePunchProtocol, requestHolePunch, requestReverseDial, reverseDialHandler, reverseDialProtocol, ReverseDialResponse } from '../protocols/index.ts'
import type { PunchEndpoint } from '../protocols/index.ts'
import { socketConnection } from './socket-conn.ts'
import { freeLocalPort, simultaneousOpen } from './tcp-punch.ts'
import { IDENTIFY_WAIT_MS, PUNCH_MIN_INTERVAL_MS, PUNCH_UPGRADE_TIMEOUT_MS, REVERSE_DIAL_GRACE_MS } from './constants.ts'
import { isSwarmMember } from './membership.ts'

export interface NatInfo { behaviour: string, externalIp?: string }

export interface DirectUpgraderInit {
  swarm: string
  /** Our NAT behaviour and external IP (from the reachability monitor); enables hole punching. */
  natInfo?: () => Promise<NatInfo>
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
  upgrader: Upgrader
  logger: ComponentLogger
  peerId: PeerId
}

export type DirectEvent = { peer: string, via: 'advertised' | 'reverse-dial' | 'peer dialed us' | 'hole-punch', ok: boolean, ms: number, error?: string }

export class DirectUpgrader implements Startable {
  readonly protocol: string
  readonly punchProtocol: string
  /** Outcome of every attempt, newest last (the daemon logs and reports them). */
  readonly attempts: DirectEvent[] = []
  private readonly components: DirectUpgraderComponents
  private readonly init: DirectUpgraderInit
  private readonly pending = new Set<string>()
  private readonly lastPunch = new Map<string, number>()
  private readonly log: Logger
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
    this.punchProtocol = holePunchProtocol(init.swarm)
    this.log = components.logger.forComponent('mycelium:node:direct-upgrade')
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
    await this.components.registrar.handle(this.punchProtocol, holePunchHandler({
      prepare: async (connection, remote) => {
        // connect() only to public addresses, at most once per peer per interval: the punch must
        // not become a way to make us send SYNs into a LAN or at a third party
        const key = connection.remotePeer.toString()
        const last = this.lastPunch.get(key)
        if (!this.acceptable(multiaddr(`/ip4/${remote.ip}/tcp/${remote.port}`)) || (last !== undefined && Date.now() - last < PUNCH_MIN_INTERVAL_MS)) return undefined
        this.lastPunch.set(key, Date.now())
        return await this.punchEndpoint(connection.remotePeer)
      },
      punch: (connection, local, remote) => {
        const started = performance.now()
        this.punch(connection.remotePeer, local, remote, 'inbound').then((ok) => {
          this.attempts.push({ peer: connection.remotePeer.toString(), via: 'hole-punch', ok, ms: performance.now() - started })
        }, (err: Error) => {
          this.attempts.push({ peer: connection.remotePeer.toString(), via: 'hole-punch', ok: false, ms: performance.now() - started, error: err.message })
        })
      }
    }), { maxInboundStreams: 2, runOnLimitedConnection: true })
    this.components.events.addEventListener('connection:open', this.onOpen)
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    this.components.events.removeEventListener('connection:open', this.onOpen)
    await this.components.registrar.unhandle(this.protocol)
    await this.components.registrar.unhandle(this.punchProtocol)
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
      if (ours.length === 0) return await this.tryHolePunch(peer, started, signal)
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

  /** Our side of a punch: a fresh local port and our external IP, when our NAT preserves ports. */
  private async punchEndpoint (peer: PeerId): Promise<PunchEndpoint | undefined> {
    if (this.init.natInfo == null || this.hasDirect(peer)) return undefined
    const nat = await this.init.natInfo()
    if (nat.behaviour !== 'port-preserving' || nat.externalIp === undefined) return undefined
    return { ip: nat.externalIp, port: await freeLocalPort() }
  }

  /** Both behind NATs: the peer with the smaller id asks the other for a simultaneous open. */
  private async tryHolePunch (peer: PeerId, started: number, signal: AbortSignal): Promise<boolean> {
    const key = peer.toString()
    // one initiator per pair: the smaller peer id; the other side only answers
    if (this.init.natInfo == null || this.selfId() > key) return false
    const local = await this.punchEndpoint(peer)
    if (local === undefined) return false
    const relayed = this.components.connectionManager.getConnections(peer).find((c) => c.status === 'open')
    if (relayed == null) return false
    try {
      const stream = await relayed.newStream(this.punchProtocol, { signal, runOnLimitedConnection: true })
      const offered = await requestHolePunch(stream, local, { signal })
      const remote = offered !== undefined && this.acceptable(multiaddr(`/ip4/${offered.ip}/tcp/${offered.port}`)) ? offered : undefined
      if (remote === undefined) {
        this.attempts.push({ peer: key, via: 'hole-punch', ok: false, ms: performance.now() - started, error: 'peer refused, or offered an address we do not connect to' })
        return false
      }
      const ok = await this.punch(peer, local, remote, 'outbound', signal)
      this.attempts.push({ peer: key, via: 'hole-punch', ok, ms: performance.now() - started })
      return ok
    } catch (err) {
      this.attempts.push({ peer: key, via: 'hole-punch', ok: false, ms: performance.now() - started, error: (err as Error).message })
      return false
    }
  }

  /** Simultaneous open, then libp2p's upgrade: the initiator runs Noise as initiator. */
  private async punch (peer: PeerId, local: PunchEndpoint, remote: PunchEndpoint, direction: 'inbound' | 'outbound', signal?: AbortSignal): Promise<boolean> {
    const socket = await simultaneousOpen(local.port, remote.ip, remote.port, { signal })
    const remoteAddr = multiaddr(`/ip4/${remote.ip}/tcp/${remote.port}${direction === 'outbound' ? `/p2p/${peer.toString()}` : ''}`)
    const maConn = socketConnection(socket, remoteAddr, direction, this.log)
    const upgradeSignal = AbortSignal.timeout(PUNCH_UPGRADE_TIMEOUT_MS)
    if (direction === 'outbound') {
      const connection = await this.components.upgrader.upgradeOutbound(maConn, { signal: upgradeSignal })
      return connection.remotePeer.equals(peer)
    }
    await this.components.upgrader.upgradeInbound(maConn, { signal: upgradeSignal })
    return this.hasDirect(peer)
  }

  private selfId (): string {
    return this.components.peerId.toString()
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
