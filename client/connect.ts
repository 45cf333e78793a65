// connect(): a light libp2p peer that joins a swarm (dials the bootstrap anchors), replicates the
// swarm state read-only (no presence beacons, no records: it is not a member), and runs requests
// over the inference protocol. The shared stack comes from protocols/libp2p-stack.ts.
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import type { PeerDiscovery } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createLibp2p } from 'libp2p'
import type { Libp2pOptions, ServiceFactoryMap } from 'libp2p'
import { openModel, openTokenizer } from '../engine/index.ts'
import type { ModelConfig, ModelSource, Tokenizer } from '../engine/index.ts'
import { DEFAULT_SWARM, frameSigner, swarmStack, swarmSync, validateSwarmName } from '../protocols/index.ts'
import type { SwarmSync } from '../protocols/index.ts'
import type { ModelManifest } from '../sharding/index.ts'
import { createClient } from './client.ts'
import { genesisFromBootstrap, replicaConsensusHost } from './consensus.ts'
import type { MyceliumClient, TokenizerOption } from './types.ts'
import { AbortError, ConnectFailedError } from './errors.ts'

export interface ConnectOptions {
  /** Anchors to join through: multiaddrs ending in /p2p/<peer id>. */
  bootstrap: string[]
  /** Swarm name (default 'public'). */
  swarm?: string
  /**
   * The model's tokenizer: a tokenizer file (llama2.c tokenizer.bin, tokenizer.json, .gguf), a
   * Tokenizer, or a lookup by manifest. Alternatively `model`.
   */
  tokenizer?: string | TokenizerOption
  /** A local copy of the model (file or directory): its tokenizer is used (only headers are read). */
  model?: string
  /** How long generate() waits for a model and a covering chain to appear (default 10 s). */
  routeWaitMs?: number
  /** Aborts joining (and closes the client later when aborted). */
  signal?: AbortSignal
}

interface LightServices extends Record<string, unknown> {
  swarmSync: SwarmSync
}

/** A tokenizer file opened against a manifest's vocabulary (the file decides its kind). */
function tokenizerFromFile (path: string): TokenizerOption {
  return async (manifest: ModelManifest): Promise<Tokenizer> => {
    const kind = path.endsWith('.json') ? 'hf' : path.endsWith('.gguf') ? 'gguf' : 'llama2c'
    const source: ModelSource = { path, format: kind, config: { vocabSize: manifest.vocabSize, bosId: -1, eosId: -1 } as unknown as ModelConfig, tensors: new Map() }
    return await openTokenizer(source, path)
  }
}

function tokenizerOption (options: ConnectOptions): TokenizerOption | undefined {
  if (typeof options.tokenizer === 'string') return tokenizerFromFile(options.tokenizer)
  if (options.tokenizer !== undefined) return options.tokenizer
  const model = options.model
  if (model === undefined) return undefined
  let opened: Promise<Tokenizer> | undefined
  return async () => await (opened ??= openModel(model).then(async (source) => await openTokenizer(source)))
}

/** Joins `swarm` through `bootstrap` as a light client; resolves once one anchor is connected. */
export async function connect (options: ConnectOptions): Promise<MyceliumClient> {
  const swarm = options.swarm ?? DEFAULT_SWARM
  validateSwarmName(swarm)
  if (!Array.isArray(options.bootstrap) || options.bootstrap.length === 0) throw new ConnectFailedError('connect needs at least one bootstrap address')
  const anchors = options.bootstrap.map((a) => multiaddr(a))
  const stack = swarmStack({ swarm, bootstrap: options.bootstrap, dhtClientMode: true })
  // our own key, so the client can sign its prompts (issue 7); libp2p would make one just the same
  const privateKey = await generateKeyPair('Ed25519')
  const node = await createLibp2p<LightServices>({
    privateKey,
    addresses: { listen: [] },
    transports: [...stack.transports, circuitRelayTransport()],
    connectionEncrypters: stack.connectionEncrypters,
    streamMuxers: stack.streamMuxers,
    connectionGater: stack.connectionGater,
    peerDiscovery: stack.peerDiscovery as unknown as Libp2pOptions['peerDiscovery'] & Array<(components: never) => PeerDiscovery>,
    services: {
      ...stack.services,
      // read-only replica: no presence beacons (a client is not a member), memory only
      swarmSync: swarmSync({ swarm, heartbeatIntervalMs: 0 })
    } as unknown as ServiceFactoryMap<LightServices>
  })
  const signal = options.signal
  try {
    const failures: string[] = []
    await Promise.any(anchors.map(async (addr) => {
      try {
        await node.dial(addr, { signal: AbortSignal.any([AbortSignal.timeout(10_000), ...(signal !== undefined ? [signal] : [])]) })
      } catch (err) {
        failures.push(`${addr.toString()}: ${(err as Error).message}`)
        throw err
      }
    })).catch((err: unknown) => {
      if (signal?.aborted === true) throw new AbortError('connect aborted', { cause: signal.reason })
      throw new ConnectFailedError(`could not reach any bootstrap peer (${failures.join('; ')})`, { cause: err })
    })
  } catch (err) {
    await node.stop()
    throw err
  }
  const state = node.services.swarmSync.state
  const tokenizer = tokenizerOption(options)
  const client = createClient({
    libp2p: node,
    swarm,
    state,
    ...(options.routeWaitMs !== undefined ? { routeWaitMs: options.routeWaitMs } : {}),
    ...(tokenizer !== undefined ? { tokenizer } : {}),
    // consensus rounds schedule with the reputation this replica derives (it writes no records)
    consensus: replicaConsensusHost(state, genesisFromBootstrap(options.bootstrap, node.peerId.toString())),
    signer: frameSigner(privateKey, node.peerId.toString()),
    onClose: async () => { await node.stop() }
  })
  signal?.addEventListener('abort', () => { void client.close() }, { once: true })
  return client
}
