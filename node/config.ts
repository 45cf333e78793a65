// Node configuration: flags become one validated, typed object here and nowhere else.
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { join, resolve } from 'node:path'
import { DEFAULT_SWARM, validateSwarmName } from '../protocols/index.ts'
import { CONTROL_SOCKET, DEFAULT_DATA_DIR, DEFAULT_LISTEN, IDENTITY_FILE, STATE_DIR } from './constants.ts'
import { ConfigError } from './errors.ts'

export interface NodeConfig {
  listen: Multiaddr[]
  bootstrap: Multiaddr[]
  /** Addresses announced as reachable without waiting for AutoNAT (public nodes). */
  announce: Multiaddr[]
  /** A reachable anchor: serves relay reservations and AutoNAT dial-backs, DHT server mode. */
  public: boolean
  swarm: string
  dataDir: string
  identityPath: string
  controlSocket: string
  /** Where the replicated swarm document of this swarm is kept (`<data-dir>/state/<swarm>`). */
  stateDir: string
  mdns: boolean
  upnp: boolean
  /** Run libp2p's DCUtR too (off by default: see node/README.md, "Direct connections"). */
  dcutr: boolean
}

/** Raw option values as commander hands them over. */
export interface NodeFlags {
  listen?: string[]
  bootstrap?: string[]
  announce?: string[]
  public?: boolean
  swarm?: string
  dataDir?: string
  identity?: string
  mdns?: boolean
  upnp?: boolean
  dcutr?: boolean
}

function parseAddrs (flag: string, values: string[]): Multiaddr[] {
  return values.map((value) => {
    try {
      return multiaddr(value)
    } catch (err) {
      throw new ConfigError(`${flag}: not a multiaddr: ${JSON.stringify(value)} (expected e.g. /ip4/203.0.113.7/tcp/4001)`, { cause: err })
    }
  })
}

/** Validates flags into a NodeConfig; every problem is a ConfigError naming the flag. */
export function nodeConfig (flags: NodeFlags): NodeConfig {
  let swarm: string
  try {
    swarm = validateSwarmName(flags.swarm ?? DEFAULT_SWARM)
  } catch (err) {
    throw new ConfigError(`--swarm: ${(err as Error).message}`, { cause: err })
  }
  const listen = parseAddrs('--listen', flags.listen ?? DEFAULT_LISTEN)
  const bootstrap = parseAddrs('--bootstrap', flags.bootstrap ?? [])
  for (const addr of bootstrap) {
    if (addr.getComponents().find((c) => c.name === 'p2p') == null) {
      throw new ConfigError(`--bootstrap: ${addr.toString()} has no /p2p/<peer id>; bootstrap addresses must name the peer`)
    }
  }
  const announce = parseAddrs('--announce', flags.announce ?? [])
  const dataDir = resolve(flags.dataDir ?? DEFAULT_DATA_DIR)
  return {
    listen,
    bootstrap,
    announce,
    public: flags.public === true,
    swarm,
    dataDir,
    identityPath: resolve(flags.identity ?? join(dataDir, IDENTITY_FILE)),
    controlSocket: join(dataDir, CONTROL_SOCKET),
    stateDir: join(dataDir, STATE_DIR, swarm),
    mdns: flags.mdns !== false,
    upnp: flags.upnp !== false,
    dcutr: flags.dcutr === true
  }
}
