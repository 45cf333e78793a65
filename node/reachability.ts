// Reachability report: what `mycelium doctor` and the daemon's status print. Collects identify's
// observed addresses per peer and reads the address manager's view (which addresses are
// verified by AutoNAT, which come from UPnP, which are relay reservations).
import type { Connection, IdentifyResult, Libp2pEvents, PeerId, Startable, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { tryGetNetConfig } from '@libp2p/utils'
import { localIps, localPortTable, natHint } from './nat-hint.ts'
import type { NatHint, PortObservation } from './nat-hint.ts'

/** The parts of libp2p's components this service reads. */
export interface ReachabilityComponents {
  peerId: PeerId
  events: TypedEventTarget<Libp2pEvents>
  addressManager: {
    getListenAddrs: () => Multiaddr[]
    getAddresses: () => Multiaddr[]
    getAddressesWithMetadata: () => Array<{ multiaddr: Multiaddr, verified: boolean, type: string }>
  }
  connectionManager: { getConnections: (peer?: PeerId) => Connection[] }
}

export interface AddressEntry { addr: string, type: string, verified: boolean }
export interface ConnectionEntry { peer: string, addr: string, direct: boolean, limited: boolean }

export interface ReachabilityReport {
  peerId: string
  /** public: a non-relay address is confirmed; private: reachable only through relays; unknown. */
  reachability: 'public' | 'private' | 'unknown'
  listen: string[]
  /** What we tell peers (identify, DHT): confirmed and announced addresses plus relay addresses. */
  advertised: string[]
  observed: Array<{ addr: string, by: string }>
  confirmed: string[]
  addresses: AddressEntry[]
  relayReservations: string[]
  upnp: AddressEntry[]
  nat: NatHint
  connections: ConnectionEntry[]
}

export class ReachabilityMonitor implements Startable {
  private readonly components: ReachabilityComponents
  private readonly observations = new Map<string, { observed: Multiaddr, remote: Multiaddr }>()
  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    const { observedAddr, connection, peerId } = evt.detail
    // over a relayed connection the peer "observes" the relay's address, not ours
    if (observedAddr == null || connection == null || connection.remoteAddr.toString().includes('/p2p-circuit') || observedAddr.toString().includes('/p2p-circuit')) return
    this.observations.set(peerId.toString(), { observed: observedAddr, remote: connection.remoteAddr })
  }

  constructor (components: ReachabilityComponents) {
    this.components = components
  }

  start (): void {
    this.components.events.addEventListener('peer:identify', this.onIdentify)
  }

  stop (): void {
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
  }

  /** NAT behaviour and the external IPv4 address peers see most often (for hole punching). */
  async natInfo (): Promise<{ behaviour: NatHint['behaviour'], externalIp?: string }> {
    const report = await this.report()
    const counts = new Map<string, number>()
    for (const o of report.observed) {
      const ip = /^\/ip4\/([\d.]+)\/tcp\//.exec(o.addr)?.[1]
      if (ip !== undefined) counts.set(ip, (counts.get(ip) ?? 0) + 1)
    }
    const externalIp = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0]
    return { behaviour: report.nat.behaviour, externalIp }
  }

  /** UPnP-mapped addresses that AutoNAT has not confirmed yet. */
  unverifiedPublicAddresses (): Multiaddr[] {
    return this.components.addressManager.getAddressesWithMetadata()
      .filter((m) => !m.verified && m.type === 'ip-mapping')
      .map((m) => m.multiaddr)
  }

  async report (): Promise<ReachabilityReport> {
    const am = this.components.addressManager
    const meta = am.getAddressesWithMetadata()
    const advertised = am.getAddresses().map(String)
    const isCircuit = (a: string): boolean => a.includes('/p2p-circuit')
    const confirmed = meta.filter((m) => m.verified && m.type !== 'transport' && !isCircuit(m.multiaddr.toString())).map((m) => m.multiaddr.toString())
    const relayReservations = [...new Set(advertised.filter(isCircuit).map((a) => a.split('/p2p-circuit')[0]))]
    const reachability = confirmed.length > 0 ? 'public' : relayReservations.length > 0 ? 'private' : 'unknown'
    const ports = await localPortTable()
    const portObs: PortObservation[] = []
    for (const { observed, remote } of this.observations.values()) {
      const o = tryGetNetConfig(observed)
      const r = tryGetNetConfig(remote)
      if (o?.protocol !== 'tcp' || r?.protocol !== 'tcp' || o.port === undefined || isCircuit(remote.toString())) continue
      portObs.push({ observedIp: o.host, observedPort: o.port, localPort: ports.get(`${r.host}:${r.port}`) })
    }
    const current = new Set(this.components.connectionManager.getConnections().map((c) => c.remotePeer.toString()))
    return {
      peerId: this.components.peerId.toString(),
      reachability,
      listen: meta.filter((m) => m.type === 'transport').map((m) => m.multiaddr.toString()),
      advertised,
      observed: [...this.observations].filter(([peer]) => current.has(peer)).map(([by, { observed }]) => ({ addr: observed.toString(), by })),
      confirmed,
      addresses: meta.map((m) => ({ addr: m.multiaddr.toString(), type: m.type, verified: m.verified })),
      relayReservations,
      upnp: meta.filter((m) => m.type === 'ip-mapping').map((m) => ({ addr: m.multiaddr.toString(), type: m.type, verified: m.verified })),
      nat: withUpnp(natHint(portObs, localIps()), meta.filter((m) => m.type === 'ip-mapping' && m.verified).map((m) => m.multiaddr.toString())),
      connections: this.components.connectionManager.getConnections().map((c) => ({
        peer: c.remotePeer.toString(),
        addr: c.remoteAddr.toString(),
        direct: !isCircuit(c.remoteAddr.toString()),
        limited: c.limits != null
      }))
    }
  }
}

/** A confirmed UPnP mapping says more about reachability than the NAT's mapping behaviour. */
function withUpnp (hint: NatHint, mapped: string[]): NatHint {
  if (mapped.length === 0) return hint
  return { behaviour: hint.behaviour, text: `${hint.text}; the router maps ${mapped.join(', ')} to us (UPnP, confirmed by AutoNAT): directly reachable` }
}

/** libp2p service factory. */
export function reachabilityMonitor (): (components: ReachabilityComponents) => ReachabilityMonitor {
  return (components) => new ReachabilityMonitor(components)
}
