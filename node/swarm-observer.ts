// `mycelium status --bootstrap`: the swarm map without a local daemon. A light libp2p peer (the
// stack every Mycelium peer shares) joins through the bootstrap addresses, pulls a read-only
// replica of the swarm state (no presence beacons, no record: it is not a member), and hands
// the views over once the replica stops growing. It serves nothing and counts nothing, so the
// map it draws has no tokens-served figures.
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Libp2pOptions, ServiceFactoryMap } from 'libp2p'
import { swarmStack, swarmSync, validateSwarmName } from '../protocols/index.ts'
import type { SwarmSync } from '../protocols/index.ts'
import { ConfigError } from './errors.ts'
import type { MapInput, MapRecord } from './swarm-map.ts'

/** How often the replica is checked while it fills. */
const OBSERVE_POLL_MS = 250
/** The replica is taken as complete when it has not grown for this long. */
const OBSERVE_SETTLE_MS = 1_500

interface ObserverServices extends Record<string, unknown> { swarmSync: SwarmSync }

/** Joins `swarm` through `bootstrap`, waits (at most `waitMs`) for the replica to settle, returns its views. */
export async function observeSwarm (bootstrap: string[], swarm: string, waitMs: number): Promise<MapInput> {
  try {
    validateSwarmName(swarm)
  } catch (err) {
    throw new ConfigError(`--swarm: ${(err as Error).message}`, { cause: err })
  }
  const stack = swarmStack({ swarm, bootstrap, dhtClientMode: true })
  const node = await createLibp2p<ObserverServices>({
    addresses: { listen: [] },
    transports: stack.transports,
    connectionEncrypters: stack.connectionEncrypters,
    streamMuxers: stack.streamMuxers,
    connectionGater: stack.connectionGater,
    services: { ...stack.services, swarmSync: swarmSync({ swarm, heartbeatIntervalMs: 0 }) } as unknown as ServiceFactoryMap<ObserverServices>
  } as Libp2pOptions<ObserverServices>)
  try {
    const deadline = Date.now() + waitMs
    const reached = await Promise.any(bootstrap.map(async (a) => await node.dial(multiaddr(a), { signal: AbortSignal.timeout(Math.max(1, waitMs)) }))).catch(() => undefined)
    if (reached === undefined) throw new ConfigError(`--bootstrap: could not reach ${bootstrap.join(', ')}`)
    const state = node.services.swarmSync.state
    let size = -1
    let stableSince = Date.now()
    while (Date.now() < deadline) {
      const now = state.nodes().size + state.manifests().length
      if (now !== size) { size = now; stableSince = Date.now() }
      if (size > 0 && Date.now() - stableSince >= OBSERVE_SETTLE_MS) break
      await new Promise((resolve) => setTimeout(resolve, OBSERVE_POLL_MS))
    }
    return {
      swarm,
      self: node.peerId.toString(),
      nodes: Object.fromEntries(state.nodes()) as unknown as Record<string, MapRecord>,
      online: state.online(),
      models: [...new Map(state.manifests().map((m) => {
        const data = m.data as { nLayers?: number, architecture?: string }
        return [m.id, { id: m.id, nLayers: data.nLayers ?? null, architecture: data.architecture ?? null }]
      })).values()],
      local: []
    }
  } finally {
    await node.stop()
  }
}
