// Content discovery on the swarm's DHT: a node announces the models it serves by manifest hash;
// anyone finds the providers of a model. The DHT key is sha-256 of
// `mycelium/<swarm>/model/<manifest hash>` wrapped in a CIDv1 (raw), so the same model in two
// swarms has two unrelated keys (and the two swarms use two different DHT protocols anyway).
import type { AbortOptions, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { modelProviderKey } from '../protocols/index.ts'

/** The parts of libp2p's content routing used here. */
export interface ContentRouting {
  provide: (cid: CID, options?: AbortOptions) => Promise<void>
  findProviders: (cid: CID, options?: AbortOptions) => AsyncIterable<{ id: PeerId, multiaddrs: Multiaddr[] }>
}

/** The CID under which providers of `manifestHash` announce themselves in `swarm`. */
export async function modelCid (swarm: string, manifestHash: string): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(modelProviderKey(swarm, manifestHash)))
}

/** Announces that this node serves the model. */
export async function announceModel (routing: ContentRouting, swarm: string, manifestHash: string, options: AbortOptions = {}): Promise<void> {
  await routing.provide(await modelCid(swarm, manifestHash), options)
}

export interface ModelProvider { peer: string, addrs: string[] }

/** Finds up to `limit` providers of the model (stops early once it has them). */
export async function findModelProviders (routing: ContentRouting, swarm: string, manifestHash: string, options: AbortOptions & { limit?: number } = {}): Promise<ModelProvider[]> {
  const found = new Map<string, ModelProvider>()
  for await (const p of routing.findProviders(await modelCid(swarm, manifestHash), options)) {
    found.set(p.id.toString(), { peer: p.id.toString(), addrs: [...new Set(p.multiaddrs.map(String))] })
    if (options.limit !== undefined && found.size >= options.limit) break
  }
  return [...found.values()].sort((a, b) => a.peer.localeCompare(b.peer))
}
