// The part of the libp2p composition that every Mycelium peer shares, daemon and light client
// alike: TCP + WebSockets, Noise, Yamux, identify (+ push), ping, the swarm's Kad-DHT, gossipsub
// and bootstrap dialling. node/host.ts adds the daemon's services (relay server, AutoNAT, UPnP,
// mDNS, the stage service, …); client/ adds swarm-state replication and a relay client.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub } from '@libp2p/gossipsub'
import { identify, identifyPush } from '@libp2p/identify'
import type { PeerDiscovery } from '@libp2p/interface'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import type { Libp2pOptions } from 'libp2p'
import { dhtProtocol } from './swarm.ts'

/** Yamux streams per connection, each way. */
export const STACK_MAX_STREAMS = 256

/**
 * Inbound streams a connection may queue before libp2p attaches its stream listener (yamux's
 * default, 10, ABORTS THE WHOLE CONNECTION on the 11th). The remote's side of a fresh connection
 * is ready before ours (our upgrade still awaits the gater while its frames arrive), so a client
 * that opens many sessions right after `dial()` sends them "early"; a loaded machine widens that
 * window. Tied to the inbound cap: yamux resets any stream past `maxInboundStreams` before it is
 * queued, so the early queue can never hold more than the connection may hold open anyway (no
 * new memory exposure, each stream bounded by its window), the cap becomes the only limit (excess
 * streams are reset one by one instead of the connection dropping), and once the listener
 * attaches, each protocol's own `maxInboundStreams` applies to the queued streams.
 */
export const STACK_MAX_EARLY_STREAMS = STACK_MAX_STREAMS

export interface SwarmStackInit {
  swarm: string
  /** Anchors to dial at once (multiaddrs ending in /p2p/<id>). */
  bootstrap?: string[]
  /** DHT mode: true = client, false = server, undefined = libp2p decides (AutoNAT). */
  dhtClientMode?: boolean
  /** Inbound DHT streams per connection. */
  dhtMaxInboundStreams?: number
}

/** Factories keyed by service name; spread into a `services` map. */
export type ServiceFactories = Record<string, (components: never) => unknown>

export interface SwarmStack {
  transports: NonNullable<Libp2pOptions['transports']>
  connectionEncrypters: NonNullable<Libp2pOptions['connectionEncrypters']>
  streamMuxers: NonNullable<Libp2pOptions['streamMuxers']>
  connectionGater: NonNullable<Libp2pOptions['connectionGater']>
  peerDiscovery: Array<(components: never) => PeerDiscovery>
  services: ServiceFactories
}

/** The shared pieces for `swarm`; callers add their transports, discovery and services. */
export function swarmStack (init: SwarmStackInit): SwarmStack {
  const peerDiscovery: Array<(components: never) => PeerDiscovery> = []
  // dial the anchors at once (libp2p waits 1 s by default): joining fast is a target
  if (init.bootstrap !== undefined && init.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: init.bootstrap, timeout: 0 }))
  return {
    transports: [tcp(), webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ maxInboundStreams: STACK_MAX_STREAMS, maxOutboundStreams: STACK_MAX_STREAMS, maxEarlyStreams: STACK_MAX_EARLY_STREAMS })],
    // Private and loopback addresses are dialable: LAN swarms and the NAT lab need them.
    connectionGater: { denyDialMultiaddr: () => false },
    peerDiscovery,
    services: {
      identify: identify(),
      identifyPush: identifyPush(),
      ping: ping(),
      dht: kadDHT({
        protocol: dhtProtocol(init.swarm),
        ...(init.dhtClientMode !== undefined ? { clientMode: init.dhtClientMode } : {}),
        // LAN addresses stay in peer records: private swarms often live on one LAN
        peerInfoMapper: passthroughMapper,
        ...(init.dhtMaxInboundStreams !== undefined ? { maxInboundStreams: init.dhtMaxInboundStreams } : {})
      }),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true })
    }
  }
}
