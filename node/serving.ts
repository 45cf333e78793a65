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

/** How often `--layers auto` checks the allocator's range for this node (ms). */
export const FOLLOW_ALLOCATION_POLL_MS = 500

/**
 * `--layers auto`: serve whatever range the allocator gives this node. On a change the new range
 * is loaded next to the old one (memory: both, briefly), new sessions go to it at once, and the
 * old shard closes when its last session ended. No range (or no allocation yet): nothing served.
 */
export function followAllocation (host: MyceliumHost, opened: OpenedModel, config: ModelConfig, model: NodeModel, log: Logger, options: { pollMs?: number } = {}): { stop: () => Promise<void> } {
  const service = host.services.inference
  let current: { key: string, shard?: Shard } = { key: '' }
  const retired: Shard[] = []
  let busy = false
  let stopped = false
  const tick = async (): Promise<void> => {
    if (busy || stopped) return
    busy = true
    try {
      for (const old of [...retired]) {
        if (service.sessionsOn(old) > 0) continue
        retired.splice(retired.indexOf(old), 1)
        await old.close()
      }
      const self = model.allocator?.current()?.self ?? null
      const key = self === null ? '' : `${self.start}:${self.end}`
      if (key === current.key) return
      const shard = self === null ? undefined : await loadShard(opened.source, { start: self.start, end: self.end, dtype: opened.dtype, threads: config.threads })
      if (stopped) { await shard?.close(); return }
      service.serve(shard === undefined ? undefined : { shard, get model () { return model.manifest?.id } })
      if (current.shard !== undefined) retired.push(current.shard)
      current = { key, ...(shard !== undefined ? { shard } : {}) }
      log.info({ event: 'serving', start: self?.start ?? null, end: self?.end ?? null, auto: true, protocol: service.protocol }, self === null ? 'serving no layers' : `serving layers [${self.start}, ${self.end}) (allocation)`)
    } catch (err) {
      log.warn({ event: 'serving-failed', err: (err as Error).message }, 'could not load the allocated layers; retrying')
    } finally {
      busy = false
    }
  }
  const timer = setInterval(() => { void tick() }, options.pollMs ?? FOLLOW_ALLOCATION_POLL_MS)
  return {
    stop: async () => {
      stopped = true
      clearInterval(timer)
      service.serve(undefined)
      await Promise.all([...retired.splice(0), ...(current.shard !== undefined ? [current.shard] : [])].map(async (s) => { await s.close() }))
    }
  }
}
