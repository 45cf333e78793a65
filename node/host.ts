// The libp2p host, composed per DESIGN.md: TCP + WebSockets, Noise, Yamux, identify, ping,
// Kad-DHT, gossipsub, circuit relay v2 (client everywhere, member-aware server on --public),
// DCUtR, AutoNAT v2, UPnP, bootstrap and mDNS — every swarm-visible name derived from the swarm.
import { autoNATv2 } from '@libp2p/autonat-v2'
import { dcutr } from '@libp2p/dcutr'
import type { PeerDiscovery, PrivateKey } from '@libp2p/interface'
import type { Identify } from '@libp2p/identify'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { GossipSub } from '@libp2p/gossipsub'
import type { CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { mdns } from '@libp2p/mdns'
import { uPnPNAT } from '@libp2p/upnp-nat'
import { createLibp2p } from 'libp2p'
import type { Libp2p, Libp2pOptions, ServiceFactoryMap } from 'libp2p'
import { bulkTransfer, consensusJudgeService, inferenceStageService, probeService, spotCheckService, swarmStack, swarmSync } from '../protocols/index.ts'
import type { BulkTransferService, ConsensusJudgeService, InferenceStageService, ProbeService, SpotCheckService, SwarmSync } from '../protocols/index.ts'
import type { NodeConfig } from './config.ts'
import { MAX_CONNECTIONS, MAX_INBOUND_STREAMS, SOFTWARE_VERSION, UPNP_INITIAL_SEARCH_MS } from './constants.ts'
import { directUpgrader } from './direct-upgrade.ts'
import type { DirectUpgrader } from './direct-upgrade.ts'
import { reachabilityMonitor } from './reachability.ts'
import type { ReachabilityComponents, ReachabilityMonitor } from './reachability.ts'
import { swarmRelayServer } from './relay-policy.ts'
import { swarmRelayTransport } from './relay-choice.ts'

/** Knobs tests and the lab turn; the daemon uses the defaults. */
export interface HostOptions {
  /** Force the DHT into server mode (tests on loopback, where nothing is ever "confirmed"). */
  dhtServer?: boolean
  /** Accept reverse-dial addresses that are private (tests on loopback). Default: public only. */
  reverseDialPrivate?: boolean
  /** Start the reverse-dial upgrader (default true). */
  directUpgrade?: boolean
  /**
   * The identity file existed before this start (its key may have signed swarm-state envelopes
   * already): with an empty state store, own writes wait for peers' copy of our chain instead of
   * restarting it at seq 1, which peers would prove to be an equivocation. Default false.
   */
  identityExisted?: boolean
  /** Keep the swarm document in memory only (doctor's short-lived probe node). Default false. */
  ephemeralState?: boolean
}

/** The services every Mycelium host runs (relay only on public nodes, upnp unless disabled). */
export interface MyceliumServices extends Record<string, unknown> {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
  autoNAT: unknown
  dcutr?: unknown
  bulk: BulkTransferService
  /** The replicated swarm document (crdt/) and its gossip + anti-entropy replication. */
  swarmSync: SwarmSync
  /** RTT and bandwidth to connected peers (/mycelium/probe/1). */
  probe: ProbeService
  /** Serves a layer range over /mycelium/<swarm>/inference/1.0.0 once `serve(shard)` is called (node/serving.ts). */
  inference: InferenceStageService
  /** Judges consensus rounds over /mycelium/<swarm>/consensus-judge/1.0.0 once the daemon sets a judge (node/consensus-judge.ts); declines before. */
  consensusJudge: ConsensusJudgeService
  /** Spot-checks of sharded execution over /mycelium/<swarm>/spot-check/1.0.0 (node/spot-check.ts sets what it answers). */
  spotCheck: SpotCheckService
  reachability: ReachabilityMonitor
  direct?: DirectUpgrader
  relay?: CircuitRelayService
  upnp?: unknown
}

export type MyceliumHost = Libp2p<MyceliumServices>

/** Builds (and starts) the libp2p node for `config` with identity `privateKey`. */
export async function createHost (config: NodeConfig, privateKey: PrivateKey, options: HostOptions = {}): Promise<MyceliumHost> {
  const listen = config.listen.map(String)
  if (!config.public) listen.push('/p2p-circuit')
  const stack = swarmStack({
    swarm: config.swarm,
    bootstrap: config.bootstrap.map(String),
    // public anchors serve the DHT; others switch to server mode once AutoNAT confirms an address
    ...(config.public || options.dhtServer === true ? { dhtClientMode: false } : {}),
    dhtMaxInboundStreams: MAX_INBOUND_STREAMS
  })
  const peerDiscovery: Array<(components: never) => PeerDiscovery> = [...stack.peerDiscovery]
  if (config.mdns) peerDiscovery.push(mdns({ serviceTag: `_mycelium-${config.swarm}._udp.local` }))
  let monitor: ReachabilityMonitor | undefined
  const services: Record<string, (components: never) => unknown> = {
    ...stack.services,
    autoNAT: autoNATv2(),
    bulk: bulkTransfer({ swarm: config.swarm }),
    swarmSync: swarmSync({
      swarm: config.swarm,
      dataDir: options.ephemeralState === true ? undefined : config.stateDir,
      identityExisted: options.identityExisted === true
    }),
    probe: probeService(),
    inference: inferenceStageService({ swarm: config.swarm }),
    consensusJudge: consensusJudgeService({ swarm: config.swarm }),
    spotCheck: spotCheckService({ swarm: config.swarm }),
    reachability: (components: ReachabilityComponents) => {
      monitor = reachabilityMonitor()(components)
      return monitor
    }
  }
  if (config.dcutr) services.dcutr = dcutr()
  if (config.upnp) services.upnp = uPnPNAT({ initialGatewaySearchTimeout: UPNP_INITIAL_SEARCH_MS })
  if (config.public) services.relay = swarmRelayServer({ swarm: config.swarm })
  if (options.directUpgrade !== false) {
    services.direct = directUpgrader({
      swarm: config.swarm,
      acceptPrivate: options.reverseDialPrivate === true,
      natInfo: async () => await (monitor?.natInfo() ?? Promise.resolve({ behaviour: 'unknown' }))
    })
  }
  return await createLibp2p<MyceliumServices>({
    privateKey,
    addresses: { listen, announce: config.announce.map(String) },
    transports: [...stack.transports, swarmRelayTransport(config.swarm)],
    connectionEncrypters: stack.connectionEncrypters,
    streamMuxers: stack.streamMuxers,
    connectionGater: stack.connectionGater,
    connectionManager: { maxConnections: MAX_CONNECTIONS, maxIncomingPendingConnections: 32 },
    peerDiscovery: peerDiscovery as unknown as Libp2pOptions['peerDiscovery'],
    services: services as unknown as ServiceFactoryMap<MyceliumServices>,
    nodeInfo: { name: 'mycelium', version: SOFTWARE_VERSION }
  })
}
