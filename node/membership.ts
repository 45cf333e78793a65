// Who counts as a member of our swarm: a peer whose identify record lists at least one protocol
// under `/mycelium/<swarm>/`. Membership is self-declared (anyone can speak the protocol); it
// separates our traffic from unrelated libp2p peers using our relay, it is not access control.
import { isSwarmProtocol } from '../protocols/index.ts'
import type { PeerId, PeerStore } from '@libp2p/interface'

/** True when the peer store has identify data for `peer` naming a protocol of `swarm`. */
export async function isSwarmMember (peerStore: PeerStore, swarm: string, peer: PeerId): Promise<boolean> {
  try {
    const record = await peerStore.get(peer)
    return record.protocols.some((p) => isSwarmProtocol(swarm, p))
  } catch (err) {
    if ((err as Error).name === 'NotFoundError') return false
    throw err
  }
}
