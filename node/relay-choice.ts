// Relay choice on the client side: prefer relays of our own swarm. libp2p's relay transport takes
// any peer that speaks the hop protocol, including a public node of another swarm it happened to
// meet; circuits through such a relay get libp2p's 128 KiB / 2 min limits, so payload protocols
// refuse them. We wrap the transport's internal `reservationStore.addRelay` (checked at start-up)
// to skip non-member relays while a member relay is known; with none known a non-member relay is
// still taken — a limited circuit still carries signalling (reverse dial, hole punch).
import { circuitRelayTransport, RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2'
import type { CircuitRelayTransportComponents, CircuitRelayTransportInit } from '@libp2p/circuit-relay-v2'
import type { PeerId, Transport } from '@libp2p/interface'
import { isSwarmProtocol } from '../protocols/index.ts'
import { NotASwarmRelayError } from './errors.ts'
import { isSwarmMember } from './membership.ts'

// reason: reservationStore.addRelay is an internal of @libp2p/circuit-relay-v2's transport.
interface RelayTransportInternals { reservationStore?: { addRelay?: (peer: PeerId, type: string) => Promise<unknown> } }

/** circuitRelayTransport that prefers relays whose identify lists our swarm's protocols. */
export function swarmRelayTransport (swarm: string, init: CircuitRelayTransportInit = {}): (components: CircuitRelayTransportComponents) => Transport {
  return (components) => {
    const transport = circuitRelayTransport(init)(components)
    const store = (transport as unknown as RelayTransportInternals).reservationStore
    const addRelay = store?.addRelay
    if (store == null || typeof addRelay !== 'function') return transport
    store.addRelay = async (peer: PeerId, type: string) => {
      if (type !== 'configured' && !await isSwarmMember(components.peerStore, swarm, peer)) {
        const memberRelays = await components.peerStore.all({
          filters: [(p) => p.protocols.includes(RELAY_V2_HOP_CODEC) && p.protocols.some((proto) => isSwarmProtocol(swarm, proto))],
          limit: 1
        })
        if (memberRelays.length > 0) throw new NotASwarmRelayError(`${peer.toString()} relays for another swarm; a relay of swarm ${swarm} is known`)
      }
      return await addRelay.call(store, peer, type)
    }
    return transport
  }
}
