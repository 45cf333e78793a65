// A hint about the NAT in front of this node, from what peers told us (identify's observed
// address) and which local TCP port each of those connections uses (/proc/net/tcp on Linux).
//   observed IP is one of ours            → no NAT
//   observed port == local port, always   → port-preserving NAT (cone-like): UPnP or a reverse
//                                            dial from a reachable peer gives a direct path
//   observed port != local port           → port-translating NAT (symmetric-like): only outbound
//                                            dials to reachable peers, or a relay, will work
import { readFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'

export interface PortObservation {
  /** Our IP:port as a peer saw it. */
  observedIp: string
  observedPort: number
  /** The local port of the same connection, when known. */
  localPort?: number
}

export type NatBehaviour = 'none' | 'port-preserving' | 'port-translating' | 'unknown'

export interface NatHint {
  behaviour: NatBehaviour
  text: string
}

/** Classifies observations (pure; see the header comment). */
export function natHint (observations: PortObservation[], localIps: string[]): NatHint {
  if (observations.length === 0) return { behaviour: 'unknown', text: 'no peer has reported our address yet (no connections, or identify has not run)' }
  if (observations.every((o) => localIps.includes(o.observedIp))) return { behaviour: 'none', text: 'no NAT: peers see one of this machine\'s own addresses' }
  const known = observations.filter((o) => o.localPort !== undefined)
  if (known.length === 0) return { behaviour: 'unknown', text: `behind a NAT (peers see ${observations[0].observedIp}); local ports unknown, so its mapping behaviour is unknown` }
  // A symmetric NAT keeps a port by chance (≈ 1 in 30 000); a cone NAT almost always keeps it.
  const kept = known.filter((o) => o.observedPort === o.localPort).length
  if (kept > 0 && kept >= known.length - kept) {
    return { behaviour: 'port-preserving', text: `behind a port-preserving NAT (cone-like; peers see ${known[0].observedIp}): UPnP, or a reverse dial from a reachable peer, gives direct connections` }
  }
  return { behaviour: 'port-translating', text: `behind a port-translating NAT (symmetric-like; peers see ${known[0].observedIp} with rewritten ports): direct connections only to reachable peers; otherwise a relay` }
}

/** This machine's IPv4/IPv6 interface addresses. */
export function localIps (): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address))
}

/** Parses /proc/net/tcp text into (remote ip:port → local port) for established IPv4 sockets
 * (TIME_WAIT entries of earlier connections to the same peer would point at stale ports). */
export function parseProcNetTcp (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/)
    if (cols.length < 3) continue
    const [, local, remote, state] = cols
    if (state !== '01') continue
    const [, localPortHex] = local.split(':')
    const [remIpHex, remPortHex] = remote.split(':')
    if (remIpHex === undefined || remPortHex === undefined || remIpHex.length !== 8) continue
    const ip = [3, 2, 1, 0].map((i) => parseInt(remIpHex.slice(i * 2, i * 2 + 2), 16)).join('.')
    out.set(`${ip}:${parseInt(remPortHex, 16)}`, parseInt(localPortHex, 16))
  }
  return out
}

/** Reads the local-port table; empty where /proc/net/tcp does not exist. */
export async function localPortTable (): Promise<Map<string, number>> {
  try {
    return parseProcNetTcp(await readFile('/proc/net/tcp', 'utf8'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw err
  }
}
