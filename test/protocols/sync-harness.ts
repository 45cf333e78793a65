// In-process libp2p nodes for the swarm-sync tests and bench: loopback TCP, noise, yamux,
// identify, gossipsub and swarm-sync, with a connection gater that enforces partitions.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import { swarmSync, type SwarmSync, type SwarmSyncInit } from '../../protocols/sync/swarm-sync.ts'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export type SyncNode = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>, pubsub: ReturnType<ReturnType<typeof gossipsub>>, swarmSync: SwarmSync }>

/** Which group each peer is in; peers in different groups may not connect. */
export class Partition {
  private readonly groups = new Map<string, number>()
  set (peerId: string, group: number): void { this.groups.set(peerId, group) }
  heal (): void { this.groups.clear() }
  blocked (a: string, b: string): boolean {
    const ga = this.groups.get(a)
    const gb = this.groups.get(b)
    return ga !== undefined && gb !== undefined && ga !== gb
  }
}

export async function createSyncNode (partition: Partition, init: SwarmSyncInit, gossip: Parameters<typeof gossipsub>[0] = {}, privateKey?: PrivateKey, extra: Pick<Libp2pOptions, 'metrics'> = {}): Promise<SyncNode> {
  let self = ''
  const deny = (peer: PeerId): boolean => partition.blocked(self, peer.toString())
  const node = await createLibp2p({
    ...(privateKey === undefined ? {} : { privateKey }),
    ...extra,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: {
      denyDialMultiaddr: () => false,
      denyDialPeer: deny,
      denyInboundEncryptedConnection: deny,
      denyOutboundEncryptedConnection: deny
    },
    services: {
      identify: identify(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, heartbeatInterval: 200, ...gossip }),
      swarmSync: swarmSync({ heartbeatIntervalMs: 0, ...init })
    }
  })
  self = node.peerId.toString()
  return node as unknown as SyncNode
}

/** Closes every connection that crosses the partition. */
export async function enforce (partition: Partition, nodes: SyncNode[]): Promise<void> {
  await Promise.all(nodes.flatMap((n) => n.getConnections()
    .filter((c) => partition.blocked(n.peerId.toString(), c.remotePeer.toString()))
    .map(async (c) => await c.close().catch(() => c.abort(new Error('partition'))))))
}

/** Polls `check` until it holds or the deadline passes. */
export async function until (check: () => boolean, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (check()) return true
    await new Promise((resolve) => setTimeout(resolve, stepMs))
  }
  return check()
}

export type GossipOnlyNode = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>, pubsub: ReturnType<ReturnType<typeof gossipsub>> }>

/** A node with gossipsub but no swarm-sync: an attacker that publishes whatever it likes. */
export async function createGossipNode (gossip: Parameters<typeof gossipsub>[0] = {}, privateKey?: PrivateKey): Promise<GossipOnlyNode> {
  const node = await createLibp2p({
    ...(privateKey === undefined ? {} : { privateKey }),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, heartbeatInterval: 200, ...gossip }) }
  })
  return node as unknown as GossipOnlyNode
}
