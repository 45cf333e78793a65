// Swarm separation: every name a node puts on the wire — protocol ids, the Kad-DHT protocol,
// gossip topics, DHT keys — carries the swarm name, so two swarms never exchange a message even
// when their nodes are connected to each other (a relay or bootstrap node may serve both).
import { DEFAULT_SWARM, MAX_SWARM_NAME_LENGTH } from './constants.ts'
import { InvalidSwarmNameError } from './errors.ts'

const SWARM_NAME = /^[a-z0-9][a-z0-9-]*$/

/** Returns the name unchanged when it is a valid swarm name: lowercase letters, digits, '-'. */
export function validateSwarmName (name: string): string {
  if (name.length === 0 || name.length > MAX_SWARM_NAME_LENGTH || !SWARM_NAME.test(name)) {
    throw new InvalidSwarmNameError(`invalid swarm name ${JSON.stringify(name)}: use 1-${MAX_SWARM_NAME_LENGTH} lowercase letters, digits and '-', starting with a letter or digit`)
  }
  return name
}

/** `/mycelium/<swarm>/` — every protocol of the swarm starts with this. */
export function swarmProtocolPrefix (swarm: string = DEFAULT_SWARM): string {
  return `/mycelium/${validateSwarmName(swarm)}/`
}

/** `/mycelium/<swarm>/<name>/<version>`: the id of one protocol of one swarm. */
export function protocolId (swarm: string, name: string, version: string): string {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name) || !/^\d+\.\d+\.\d+$/.test(version)) {
    throw new InvalidSwarmNameError(`invalid protocol name or version: ${name} ${version}`)
  }
  return `${swarmProtocolPrefix(swarm)}${name}/${version}`
}

/** True when a protocol id belongs to the swarm. */
export function isSwarmProtocol (swarm: string, protocol: string): boolean {
  return protocol.startsWith(swarmProtocolPrefix(swarm))
}

/** The Kad-DHT protocol of the swarm: a separate DHT per swarm (`/mycelium/<swarm>/kad/1.0.0`). */
export function dhtProtocol (swarm: string): string {
  return protocolId(swarm, 'kad', '1.0.0')
}

/** Gossipsub topic of the swarm: `mycelium/<swarm>/<topic>`. */
export function topicName (swarm: string, topic: string): string {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(topic)) throw new InvalidSwarmNameError(`invalid topic name ${JSON.stringify(topic)}`)
  return `mycelium/${validateSwarmName(swarm)}/${topic}`
}

/** The DHT key under which providers of a model announce themselves, as bytes to hash. */
export function modelProviderKey (swarm: string, manifestHash: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(manifestHash)) throw new InvalidSwarmNameError(`a manifest hash is 64 lowercase hex digits (sha-256), got ${JSON.stringify(manifestHash)}`)
  return new TextEncoder().encode(`mycelium/${validateSwarmName(swarm)}/model/${manifestHash}`)
}
