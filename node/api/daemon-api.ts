// `node start --api-port`: the HTTP API on the daemon's own host. An SDK client is built over the
// host and its swarm-state replica (createClient), so the API generates exactly as any client of
// the swarm does; the daemon's own model supplies the tokenizer and a short name for it.
import { basename, extname } from 'node:path'
import { streamPair } from '@libp2p/utils'
import type { Logger } from 'pino'
import { createClient } from '../../client/index.ts'
import type { TokenizerOption } from '../../client/index.ts'
import { openTokenizer } from '../../engine/index.ts'
import type { Tokenizer } from '../../engine/index.ts'
import type { NodeConfig } from '../config.ts'
import { ConfigError } from '../errors.ts'
import type { MyceliumHost } from '../host.ts'
import type { NodeModel, OpenedModel } from '../model-startup.ts'
import { withLoad } from '../load-beacon.ts'
import type { LoadBeacon } from '../load-beacon.ts'
import { consensusOwnerOf } from '../consensus-judge.ts'
import { startApi } from './server.ts'
import type { ApiServer } from './server.ts'

/** The name a model file goes by in the API besides its manifest id: `stories260K` for …/stories260K.bin. */
export function modelAlias (path: string): string {
  const name = basename(path.replace(/\/+$/, ''))
  return extname(name) === '' ? name : name.slice(0, -extname(name).length)
}

export async function startDaemonApi (host: MyceliumHost, config: NodeConfig & { api: { host: string, port: number } }, opened: OpenedModel | undefined, model: NodeModel | undefined, log: Logger, loads?: Pick<LoadBeacon, 'table' | 'own'>): Promise<ApiServer> {
  const self = host.peerId.toString()
  // the records with the live load of each stage merged in (the router prefers idle stages)
  const state = loads === undefined ? host.services.swarmSync.state : withLoad(host.services.swarmSync.state, loads.table, { peerId: self, load: loads.own })
  let own: Promise<Tokenizer> | undefined
  const owner = consensusOwnerOf(host)
  // the tokenizer of the model this node serves; other models need a client with their tokenizer
  const tokenizer: TokenizerOption = async (manifest) => {
    if (opened === undefined || model?.manifest?.id !== manifest.id) return undefined
    own ??= openTokenizer(opened.source)
    return await own
  }
  const client = createClient({
    libp2p: host,
    swarm: config.swarm,
    state,
    tokenizer,
    self,
    // our own beacon may not be in our presence table: we are online as long as we run; nodes the
    // ledger excludes (a confirmed failed spot-check) are not routed
    online: () => [...new Set([...state.online(), self])].filter((p) => !owner.excluded?.(p)),
    // consensus rounds (issue 7): owned by this daemon, scheduled with its ledger, recorded
    consensus: owner,
    // we may be the chain's first stage: libp2p cannot dial itself, so hand the stream over in process
    openLocal: async () => {
      const [ours, theirs] = await streamPair({ delay: 0 })
      void host.services.inference.handle(theirs, self)
      return ours
    }
  })
  let api: ApiServer
  try {
    api = await startApi({
      client,
      host: config.api.host,
      port: config.api.port,
      aliases: () => (model?.manifest !== undefined ? { [modelAlias(model.path)]: model.manifest.id } : {})
    })
  } catch (err) {
    await client.close()
    throw new ConfigError(`--api-port: cannot serve the API on ${config.api.host}:${config.api.port}: ${(err as Error).message}`, { cause: err })
  }
  log.info({ event: 'api', url: api.url, host: config.api.host, port: api.port }, `OpenAI-compatible API on ${api.url}`)
  const close = api.close
  return { ...api, close: async () => { await client.close(); await close() } }
}
