// TCP hole punch (`/mycelium/<swarm>/hole-punch/1.0.0`), for two peers behind port-preserving
// (cone-like) NATs, neither reachable. Over their relayed connection they swap the external
// ip:port each will connect *from* (a fresh local port, not the listening one — Node cannot
// reuse that), then both connect at once: the SYNs cross, each NAT has a mapping for the other's
// SYN by the time it arrives, and TCP's simultaneous open joins the two sockets. Grammar in
// README.md. Signalling only: runs on limited circuits.
//
//   initiator → lp(PunchRequest{ip, port})
//   responder → lp(PunchResponse{status, ip, port}), then starts connecting
import { pbStream } from '@libp2p/utils'
import type { AbortOptions, Connection, Stream } from '@libp2p/interface'
import { PunchRequest, PunchResponse } from './hole-punch.pb.js'
import { DEFAULT_SWARM, PUNCH_EXCHANGE_TIMEOUT_MS, PUNCH_MAX_FRAME_BYTES } from './constants.ts'
import { protocolId } from './swarm.ts'

export { PunchRequest, PunchResponse }

/** The hole-punch protocol id of a swarm. */
export function holePunchProtocol (swarm: string = DEFAULT_SWARM): string {
  return protocolId(swarm, 'hole-punch', '1.0.0')
}

export interface PunchEndpoint { ip: string, port: number }

function validEndpoint (e: PunchEndpoint): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(e.ip) && e.ip.split('.').every((o) => Number(o) <= 255) && e.port >= 1024 && e.port <= 65535
}

export interface HolePunchHandlerInit {
  /** Our side: given the peer's endpoint, returns the one we will connect from, or undefined to
   * refuse (symmetric NAT, a target we will not connect to, too many punches from this peer). */
  prepare: (connection: Connection, remote: PunchEndpoint) => Promise<PunchEndpoint | undefined>
  /** Starts connecting from `local` to `remote` (after the answer is sent). */
  punch: (connection: Connection, local: PunchEndpoint, remote: PunchEndpoint) => void
}

/** Returns the responder's stream handler. */
export function holePunchHandler (init: HolePunchHandlerInit): (stream: Stream, connection: Connection) => Promise<void> {
  return async (stream, connection) => {
    const signal = AbortSignal.timeout(PUNCH_EXCHANGE_TIMEOUT_MS)
    const pb = pbStream(stream, { maxDataLength: PUNCH_MAX_FRAME_BYTES })
    let remote: PunchEndpoint
    try {
      remote = await pb.read(PunchRequest, { signal })
    } catch (err) {
      if (signal.aborted) throw err
      await pb.write({ status: PunchResponse.Status.MALFORMED, ip: '', port: 0 }, PunchResponse, { signal })
      await stream.close({ signal })
      return
    }
    const local = validEndpoint(remote) ? await init.prepare(connection, remote) : undefined
    if (local === undefined) {
      await pb.write({ status: validEndpoint(remote) ? PunchResponse.Status.REFUSED : PunchResponse.Status.MALFORMED, ip: '', port: 0 }, PunchResponse, { signal })
      await stream.close({ signal })
      return
    }
    await pb.write({ status: PunchResponse.Status.OK, ip: local.ip, port: local.port }, PunchResponse, { signal })
    await stream.close({ signal })
    init.punch(connection, local, remote)
  }
}

/** Initiator: offers our endpoint, returns the responder's (undefined when it refused). */
export async function requestHolePunch (stream: Stream, local: PunchEndpoint, options: AbortOptions = {}): Promise<PunchEndpoint | undefined> {
  const pb = pbStream(stream, { maxDataLength: PUNCH_MAX_FRAME_BYTES })
  await pb.write({ ip: local.ip, port: local.port }, PunchRequest, options)
  const reply = await pb.read(PunchResponse, options)
  await stream.close(options)
  if (reply.status !== PunchResponse.Status.OK) return undefined
  const remote = { ip: reply.ip, port: reply.port }
  return validEndpoint(remote) ? remote : undefined
}
