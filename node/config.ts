// Node configuration: flags become one validated, typed object here and nowhere else.
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'
import { DEFAULT_SWARM, validateSwarmName } from '../protocols/index.ts'
import { CONTROL_SOCKET, MANIFEST_CACHE_DIR, DEFAULT_DATA_DIR, DEFAULT_LISTEN, IDENTITY_FILE, STATE_DIR } from './constants.ts'
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
  /** The model this node offers to serve (absent: a mesh-only node). */
  model?: ModelConfig
  /** `--api-port`: serve the OpenAI-compatible HTTP API (node/api/) on host:port (port 0: a free one). */
  api?: { host: string, port: number }
  /** TEST ONLY (`--test-corrupt-output SCALE`, hidden): add SCALE × RMS Gaussian noise to every hidden state this node's stage sends (issue 7's corrupting node). */
  testCorruptOutput?: number
  /** TEST ONLY (`--test-wrong-stage SCALE`, hidden): this node's stage answers everything wrongly, calibration challenges included (node/test-wrong-stage.ts). */
  testWrongStage?: number
  /**
   * `--judge-model PATH` (without --model): hold this model for judging and calibrating newcomers
   * only, serving no layers (issue 7; a model-less anchor — `mycelium testnet`'s relay — can then
   * admit nodes). Its manifest id is hashed like a served model's.
   */
  judgeModel?: { path: string, manifestCacheDir: string }
}

/** Weight formats the engine holds layers in. */
export type ServeDType = 'f32' | 'f16' | 'q8_0' | 'q4_0'
export const SERVE_DTYPES: readonly ServeDType[] = ['f32', 'f16', 'q8_0', 'q4_0']

/** `--model` and the flags that go with it. */
export interface ModelConfig {
  /** A llama2.c .bin, a Hugging Face directory or a .gguf file (resolved). */
  path: string
  /** How layers are held in memory; absent → the file's own layer dtype when the engine holds it, else f32. */
  dtype?: ServeDType
  /** The operator's memory limit (`--max-memory`), bytes. */
  maxMemoryBytes?: number
  /** Kernel threads (measurement and, later, serving). */
  threads: number
  /** Where content hashes of model files are cached (`<data-dir>/manifests`). */
  manifestCacheDir: string
  /**
   * `--layers a:b`: serve exactly layers [a, b) over the inference protocol (checked against the
   * model's layer count once it is open). Absent (`--layers auto` or no flag): serve the range the
   * swarm's allocation gives this node, following it as it moves (node/serving.ts).
   */
  layers?: { start: number, end: number }
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
  model?: string
  dtype?: string
  maxMemory?: string
  threads?: string
  layers?: string
  apiPort?: string
  apiHost?: string
  testCorruptOutput?: string
  testWrongStage?: string
  judgeModel?: string
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/**
 * Bytes from a size such as `4G`, `512M`, `1.5GiB`, `1073741824`. Suffixes are binary (K = 1024),
 * as in `docker --memory`; a trailing `B`/`iB` is accepted.
 */
export function parseBytes (flag: string, value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(value)
  const bytes = m === null ? NaN : Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()])
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new ConfigError(`${flag}: not a size: ${JSON.stringify(value)} (expected bytes with an optional K, M, G or T suffix, e.g. 512M or 4G)`)
  }
  return bytes
}

function modelConfig (flags: NodeFlags, dataDir: string): ModelConfig | undefined {
  if (flags.model === undefined) {
    for (const [flag, v] of [['--dtype', flags.dtype], ['--max-memory', flags.maxMemory], ['--threads', flags.threads], ['--layers', flags.layers]] as const) {
      if (v !== undefined) throw new ConfigError(`${flag} needs --model (it describes how the model is served)`)
    }
    return undefined
  }
  const path = resolve(flags.model)
  if (!existsSync(path)) throw new ConfigError(`--model: no such file or directory: ${path}`)
  if (flags.dtype !== undefined && !(SERVE_DTYPES as readonly string[]).includes(flags.dtype)) {
    throw new ConfigError(`--dtype: ${JSON.stringify(flags.dtype)} is not one of ${SERVE_DTYPES.join(', ')}`)
  }
  let threads = availableParallelism()
  if (flags.threads !== undefined) {
    threads = Number(flags.threads)
    if (!Number.isInteger(threads) || threads < 1) throw new ConfigError(`--threads: must be a whole number ≥ 1, not ${JSON.stringify(flags.threads)}`)
  }
  const layers = parseLayers(flags.layers)
  return {
    path,
    ...(layers !== undefined ? { layers } : {}),
    ...(flags.dtype !== undefined ? { dtype: flags.dtype as ServeDType } : {}),
    ...(flags.maxMemory !== undefined ? { maxMemoryBytes: parseBytes('--max-memory', flags.maxMemory) } : {}),
    threads,
    manifestCacheDir: join(dataDir, MANIFEST_CACHE_DIR)
  }
}

/** `--layers a:b` → { start: a, end: b } (half-open, a < b); `auto` or absent → undefined. */
export function parseLayers (value: string | undefined): { start: number, end: number } | undefined {
  if (value === undefined || value === 'auto') return undefined
  const m = /^(\d{1,6}):(\d{1,6})$/.exec(value)
  const start = Number(m?.[1])
  const end = Number(m?.[2])
  if (m === null || !(start < end)) throw new ConfigError(`--layers: expected START:END with START < END (layers [START, END)) or auto, not ${JSON.stringify(value)}`)
  return { start, end }
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
  const model = modelConfig(flags, dataDir)
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
    dcutr: flags.dcutr === true,
    ...(model !== undefined ? { model } : {}),
    ...apiConfig(flags),
    ...testCorruptConfig(flags),
    ...judgeModelConfig(flags, dataDir)
  }
}

/** `--judge-model PATH`: an existing file; not with --model (a serving node judges with its own model). */
function judgeModelConfig (flags: NodeFlags, dataDir: string): { judgeModel?: { path: string, manifestCacheDir: string } } {
  if (flags.judgeModel === undefined) return {}
  if (flags.model !== undefined) throw new ConfigError('--judge-model: not with --model (a node that serves a model judges with it)')
  const path = resolve(flags.judgeModel)
  if (!existsSync(path)) throw new ConfigError(`--judge-model: no such file or directory: ${path}`)
  return { judgeModel: { path, manifestCacheDir: join(dataDir, MANIFEST_CACHE_DIR) } }
}

/** `--test-corrupt-output SCALE` (test only): a positive finite number. */
function testCorruptConfig (flags: NodeFlags): { testCorruptOutput?: number, testWrongStage?: number } {
  const scale = (flag: string, text: string): number => {
    const x = Number(text)
    if (!Number.isFinite(x) || x <= 0) throw new ConfigError(`${flag}: must be a positive number, not ${JSON.stringify(text)}`)
    return x
  }
  return {
    ...(flags.testCorruptOutput !== undefined ? { testCorruptOutput: scale('--test-corrupt-output', flags.testCorruptOutput) } : {}),
    ...(flags.testWrongStage !== undefined ? { testWrongStage: scale('--test-wrong-stage', flags.testWrongStage) } : {})
  }
}

/** `--api-port` (0–65535; 0 picks a free port) and `--api-host` (default 127.0.0.1, needs --api-port). */
function apiConfig (flags: NodeFlags): { api?: { host: string, port: number } } {
  if (flags.apiPort === undefined) {
    if (flags.apiHost !== undefined) throw new ConfigError('--api-host needs --api-port')
    return {}
  }
  const port = Number(flags.apiPort)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--api-port: must be a port number 0–65535 (0 picks a free one), not ${JSON.stringify(flags.apiPort)}`)
  const host = flags.apiHost ?? '127.0.0.1'
  if (host.trim() === '') throw new ConfigError('--api-host: must not be empty')
  return { api: { host, port } }
}
