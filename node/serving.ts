// `--layers a:b`: load exactly that layer range with the engine and hand it to the host's
// inference stage service, which then answers OpenSession for [a, b). The range is checked against
// the opened model before the shard is loaded; the model id clients must name is the manifest id
// once hashing finished (before that the stage accepts any, as a request names a manifest only
// after the swarm state published it). `--layers auto` does not serve yet (see README.md).
import type { Logger } from 'pino'
import { loadShard } from '../engine/index.ts'
import type { Shard } from '../engine/index.ts'
import type { ModelConfig } from './config.ts'
import { ConfigError } from './errors.ts'
import type { MyceliumHost } from './host.ts'
import type { NodeModel, OpenedModel } from './model-startup.ts'

export interface StageServing {
  shard: Shard
  stop: () => Promise<void>
}

/** Throws a ConfigError naming `--layers` when the range does not fit the model. */
export function checkLayers (layers: { start: number, end: number }, nLayers: number): void {
  if (layers.end > nLayers) throw new ConfigError(`--layers: ${layers.start}:${layers.end} passes the model's ${nLayers} layers`)
}

/** Loads `[start, end)` of the opened model and serves it; `model` supplies the manifest id when known. */
export async function startStageServing (host: MyceliumHost, opened: OpenedModel, config: ModelConfig & { layers: { start: number, end: number } }, model: NodeModel | undefined, log: Logger, options: { signal?: AbortSignal } = {}): Promise<StageServing> {
  const { start, end } = config.layers
  checkLayers(config.layers, opened.source.config.nLayers)
  const t0 = performance.now()
  const shard = await loadShard(opened.source, { start, end, dtype: opened.dtype, threads: config.threads, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
  host.services.inference.serve({ shard, get model () { return model?.manifest?.id } })
  log.info({ event: 'serving', start, end, protocol: host.services.inference.protocol, weightBytes: shard.weightBytes, ms: Math.round(performance.now() - t0) }, `serving layers [${start}, ${end})`)
  return {
    shard,
    stop: async () => {
      host.services.inference.serve(undefined)
      await shard.close()
    }
  }
}
