// Circuit relay v2 server with two classes of circuits:
//   - swarm circuits (both ends are members of our swarm): no data or duration limit, so the
//     connection is not "limited" and tensor protocols may run over it;
//   - every other circuit: libp2p's defaults (128 KiB and 2 min per circuit), so an unrelated
//     peer gets enough for signalling (DCUtR, identify) and nothing more.
//
// libp2p's relay server applies the *destination's* reservation limit to each circuit and has no
// per-circuit hook, so we wrap its `handleConnect`: for a member→member connect we hand it a
// view of the reservation store whose entry for the destination carries no limit. The wrap is
// pinned by test/node/relay-policy.test.ts (a member moves > 128 KiB, a non-member is cut off).
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import type { CircuitRelayServerComponents, CircuitRelayServerInit, CircuitRelayService, RelayReservation } from '@libp2p/circuit-relay-v2'
import type { PeerId } from '@libp2p/interface'
import { equals as equalBytes } from 'uint8arrays/equals'
import { isSwarmMember } from './membership.ts'
import { RELAY_MAX_INBOUND_HOP_STREAMS, RELAY_MAX_RESERVATIONS, RELAY_RESERVATION_TTL_MS } from './constants.ts'

export interface SwarmRelayInit {
  /** Swarm whose members get unlimited circuits. */
  swarm: string
  /** Passed to libp2p's relay server; `reservations.defaultDataLimit` etc. bound non-members. */
  server?: CircuitRelayServerInit
}

interface ReservationView { get: (peer: PeerId) => RelayReservation | undefined }
interface ConnectArgs { connection: { remotePeer: PeerId }, request: { peer?: { id: Uint8Array } } }
// reason: handleConnect and reservationStore are internals of libp2p's relay server class.
interface RelayInternals { handleConnect: (args: ConnectArgs, options: unknown) => Promise<void>, reservationStore: ReservationView }

/** The relay server factory used by `--public` nodes. */
export function swarmRelayServer (init: SwarmRelayInit): (components: CircuitRelayServerComponents) => CircuitRelayService {
  const serverInit: CircuitRelayServerInit = {
    maxInboundHopStreams: RELAY_MAX_INBOUND_HOP_STREAMS,
    ...init.server,
    reservations: {
      maxReservations: RELAY_MAX_RESERVATIONS,
      reservationTtl: RELAY_RESERVATION_TTL_MS,
      applyDefaultLimit: true,
      ...init.server?.reservations
    }
  }
  return (components) => {
    const service = circuitRelayServer(serverInit)(components)
    const internals = service as unknown as RelayInternals
    const original = internals.handleConnect
    if (typeof original !== 'function' || internals.reservationStore?.get == null) {
      throw new Error('circuit relay server internals changed: cannot apply swarm relay limits')
    }
    internals.handleConnect = async function (this: RelayInternals, args: ConnectArgs, options: unknown) {
      const src = args.connection.remotePeer
      const dstId = args.request.peer?.id
      const store = this.reservationStore
      let dst: PeerId | undefined
      for (const [peer] of service.reservations) {
        if (dstId != null && equalBytes(peer.toMultihash().bytes, dstId)) dst = peer
      }
      const members = dst != null &&
        await isSwarmMember(components.peerStore, init.swarm, src) &&
        await isSwarmMember(components.peerStore, init.swarm, dst)
      if (!members) return await original.call(this, args, options)
      const view: ReservationView = {
        get: (peer) => {
          const reservation = store.get(peer)
          return reservation == null ? undefined : { ...reservation, limit: undefined }
        }
      }
      return await original.call(Object.create(this, { reservationStore: { value: view } }), args, options)
    }
    return service
  }
}
