// Reverse dial (`/mycelium/<swarm>/reverse-dial/1.0.0`). When two peers are connected only
// through a relay and one of them is directly reachable (public address, UPnP mapping confirmed
// by AutoNAT), the reachable one asks the other to dial it back; an outbound dial leaves any NAT,
// so this gives a direct connection whatever the caller's NAT does. Grammar in README.md.
//
//   requester → lp(ReverseDialRequest{addrs})   (≤ REVERSE_DIAL_MAX_ADDRS binary multiaddrs)
//   dialer    → lp(ReverseDialResponse{status}) after its dial succeeded or failed
//
// The dialer only dials the requesting peer id (the handshake proves it), at most once per
// REVERSE_DIAL_MIN_INTERVAL_MS per peer, and only addresses its filter accepts (public ones by
// default), so the protocol cannot be used to make a node scan a network.
import { pbStream } from '@libp2p/utils'
import type { AbortOptions, Connection, PeerId, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { ReverseDialRequest, ReverseDialResponse } from './reverse-dial.pb.js'
import {
  DEFAULT_SWARM, REVERSE_DIAL_MAX_ADDRS, REVERSE_DIAL_MAX_FRAME_BYTES, REVERSE_DIAL_MIN_INTERVAL_MS,
  REVERSE_DIAL_TIMEOUT_MS
} from './constants.ts'
import { protocolId } from './swarm.ts'

export { ReverseDialRequest, ReverseDialResponse }

/** The reverse-dial protocol id of a swarm. */
export function reverseDialProtocol (swarm: string = DEFAULT_SWARM): string {
  return protocolId(swarm, 'reverse-dial', '1.0.0')
}

export interface ReverseDialHandlerInit {
  /** Dials `peer` at `addrs`; resolves true when a direct connection is open. */
  dial: (peer: PeerId, addrs: Multiaddr[], options: AbortOptions) => Promise<boolean>
  /** Which addresses may be dialed (default: every address). */
  acceptAddr?: (addr: Multiaddr) => boolean
  /** Clock in ms (default Date.now). */
  now?: () => number
  /** Least interval between two dials for the same peer (default REVERSE_DIAL_MIN_INTERVAL_MS). */
  minIntervalMs?: number
  /** Deadline of one request (default REVERSE_DIAL_TIMEOUT_MS). */
  timeoutMs?: number
}

/** Returns a stream handler for inbound reverse-dial requests. */
export function reverseDialHandler (init: ReverseDialHandlerInit): (stream: Stream, connection: Connection) => Promise<void> {
  const lastDial = new Map<string, number>()
  const now = init.now ?? Date.now
  const minInterval = init.minIntervalMs ?? REVERSE_DIAL_MIN_INTERVAL_MS
  return async (stream, connection) => {
    const signal = AbortSignal.timeout(init.timeoutMs ?? REVERSE_DIAL_TIMEOUT_MS)
    const pb = pbStream(stream, { maxDataLength: REVERSE_DIAL_MAX_FRAME_BYTES }).pb(ReverseDialResponse)
    const answer = async (status: ReverseDialResponse.Status): Promise<void> => {
      await pb.write({ status }, { signal })
      await stream.close({ signal })
    }
    let addrs: Multiaddr[]
    try {
      const request = await pb.unwrap().read(ReverseDialRequest, { signal, limits: { addrs: REVERSE_DIAL_MAX_ADDRS } })
      addrs = request.addrs.map((bytes) => multiaddr(bytes))
    } catch (err) {
      if (signal.aborted) throw err
      await answer(ReverseDialResponse.Status.MALFORMED)
      return
    }
    const peer = connection.remotePeer
    const key = peer.toString()
    const last = lastDial.get(key)
    const accepted = addrs.filter((a) => !a.toString().includes('/p2p-circuit') && (init.acceptAddr?.(a) ?? true))
    if ((last !== undefined && now() - last < minInterval) || accepted.length === 0) {
      await answer(ReverseDialResponse.Status.REFUSED)
      return
    }
    lastDial.set(key, now())
    const ok = await init.dial(peer, accepted, { signal }).catch(() => false)
    await answer(ok ? ReverseDialResponse.Status.OK : ReverseDialResponse.Status.DIAL_FAILED)
  }
}

/** Asks the peer at the other end of `stream` to dial us back at `addrs`; returns its status. */
export async function requestReverseDial (stream: Stream, addrs: Multiaddr[], options: AbortOptions = {}): Promise<ReverseDialResponse.Status> {
  const pb = pbStream(stream, { maxDataLength: REVERSE_DIAL_MAX_FRAME_BYTES })
  await pb.write({ addrs: addrs.slice(0, REVERSE_DIAL_MAX_ADDRS).map((a) => a.bytes) }, ReverseDialRequest, options)
  const reply = await pb.read(ReverseDialResponse, options)
  await stream.close(options)
  return reply.status
}
