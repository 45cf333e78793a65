// `--layers a:b`: load exactly that layer range with the engine and hand it to the host's
// inference stage service, which then answers OpenSession for [a, b). The range is checked against
// the opened model before the shard is loaded; the model id clients must name is the manifest id
// once hashing finished (before that the stage accepts any, as a request names a manifest only
// after the swarm state published it). `--layers auto` follows the allocator (followAllocation).
import type { Logger } from 'pino'
import { loadShard } from '../engine/index.ts'
import type { Shard, StageInput, WeightDType } from '../engine/index.ts'
import { mayGiveUp } from '../sharding/index.ts'
import type { LayerRange, ModelManifest, Move, StepTimer } from '../sharding/index.ts'
import type { AllocationView } from './allocation.ts'
import type { ModelConfig } from './config.ts'
import { ConfigError } from './errors.ts'
import type { MyceliumHost } from './host.ts'
import type { NodeModel, OpenedModel } from './model-startup.ts'
import { loadProgress } from './progress.ts'

export interface StageServing {
  shard: Shard
  stop: () => Promise<void>
}

/** Throws a ConfigError naming `--layers` when the range does not fit the model. */
export function checkLayers (layers: { start: number, end: number }, nLayers: number): void {
  if (layers.end > nLayers) throw new ConfigError(`--layers: ${layers.start}:${layers.end} passes the model's ${nLayers} layers`)
}

/**
 * `shard` with its `stepBatch` timed into the node's step timer (the stage scheduler runs every
 * step through it): a pass holding decode steps records its wall time as one decode token's time
 * over the shard's layers (each token of the batch waited the whole pass); a pass of prefill
 * chunks only records per prompt token. The load beacon publishes the timer's decode figure.
 */
export function timedShard (shard: Shard, timer: () => StepTimer | undefined): Shard {
  const layers = shard.end - shard.start
  const rows = (input: StageInput): number => ('tokens' in input ? input.tokens.length : Math.round(input.hidden.length / shard.config.dim))
  return {
    ...shard,
    stepBatch: (items) => {
      const t0 = performance.now()
      const out = shard.stepBatch(items)
      const ms = performance.now() - t0
      const t = timer()
      if (t !== undefined && items.length > 0) {
        const counts = items.map((i) => rows(i.input))
        if (counts.includes(1)) t.record(ms, layers, 1)
        else t.record(ms, layers, counts.reduce((n, c) => n + c, 0))
      }
      return out
    }
  }
}

/** Loads `[start, end)` of the opened model and serves it; `model` supplies the manifest id when known. */
export async function startStageServing (host: MyceliumHost, opened: OpenedModel, config: ModelConfig & { layers: { start: number, end: number } }, model: NodeModel | undefined, log: Logger, options: { signal?: AbortSignal } = {}): Promise<StageServing> {
  const { start, end } = config.layers
  checkLayers(config.layers, opened.source.config.nLayers)
  const t0 = performance.now()
  const shard = timedShard(await loadShard(opened.source, { start, end, dtype: opened.dtype, threads: config.threads, onProgress: loadProgress(`layers [${start}, ${end})`, { log }), ...(options.signal !== undefined ? { signal: options.signal } : {}) }), () => model?.stepTimer)
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

/** Longest wait for the old range's sessions to end when a move must drain first (ms). */
export const FOLLOW_ALLOCATION_DRAIN_MS = 60_000

/**
 * How long the allocator must have given this node its new range before the node gives up layers
 * for it (ms): twice the time δ we allow a change of a node record to reach the other replicas
 * (gossip, ~1 s), so a node that counted on this one keeping those layers has seen its new target
 * by then. The record's 2 s write debounce can stretch δ beyond that (node/README.md, "Targets
 * change mid-move", says what that leaves open).
 */
export const FOLLOW_ALLOCATION_SETTLE_MS = 2_000

/** What `followAllocation` reads and drives (the host's stage service and the model side). */
export interface FollowTarget {
  service: Pick<MyceliumHost['services']['inference'], 'serve' | 'sessionsOn' | 'protocol' | 'usage'>
  model: Pick<NodeModel, 'allocator' | 'manifest' | 'capability' | 'served' | 'stepTimer'>
  /** This node's peer id (its moves are found in the allocator's waves by it). */
  self: string
}

/** Weight bytes a range will take once loaded (an estimate): its layers, plus the embedding table (first) and head (last). */
export function rangeWeightBytes (manifest: ModelManifest, dtype: WeightDType, range: { start: number, end: number }): number {
  const layers = (range.end - range.start) * manifest.layerBytes[dtype]
  const embedding = range.start === 0 ? manifest.embeddingBytes : 0
  // a tied LM head is the embedding table: loaded once when one shard is both first and last
  const head = range.end !== manifest.nLayers ? 0 : manifest.headBytes > 0 ? manifest.headBytes : range.start === 0 ? 0 : manifest.embeddingBytes
  return layers + embedding + head
}

/**
 * The wave of the allocator's current plan that holds this node's move, or -1 when the plan has
 * no move for it (nothing staggered: the published ranges already are the target).
 */
export function waveOf (waves: Move[][], self: string): number {
  return waves.findIndex((wave) => wave.some((m) => m.peerId === self))
}

/** Layers of `from` that `to` lacks (all of them when `to` is null). */
export function layersGivenUp (from: LayerRange | undefined, to: LayerRange | null): number[] {
  const out: number[] = []
  if (from === undefined) return out
  for (let l = from.start; l < from.end; l++) if (to === null || l < to.start || l >= to.end) out.push(l)
  return out
}

const keyOf = (range: LayerRange | null): string => (range === null ? '' : `${range.start}:${range.end}`)

/**
 * `--layers auto`: serve whatever range the allocator gives this node.
 * - Staggered: a move in wave k > 0 of the allocator's plan waits until the plan, recomputed
 *   on every pass from the ranges the members' records say they serve, has it in wave 0 (the
 *   earlier waves landed), so a layer served now is not dropped before its new server took it
 *   (sharding/move-plan.ts). The record publishes the range this node serves (`model.served`,
 *   set here once a range is loaded or dropped) and the allocator's range as its target.
 * - Re-checked when layers are dropped: the view a tick starts from may be a pass old, and targets
 *   change while a node moves (RTTs re-probed, joins, leaves, a long load). So right before it
 *   stops serving a layer (a drain, or the switch to a range loaded beside) the node runs a fresh
 *   pass and drops only if it still gives this range, the move is in wave 0 and each layer given
 *   up keeps a holder that agrees on its own target (sharding `mayGiveUp`), and only once the
 *   range has been its target for `settleMs`. Otherwise it keeps serving the old range (a range
 *   loaded beside waits, loaded, for the next tick) and logs `serving-hold` with the reason.
 * - Beside or drain: when the new range fits the memory budget next to what is loaded now (old
 *   weights + KV reserved by its sessions), the new range is loaded while the old one keeps
 *   serving, new sessions switch at once and the old shard closes when its last session ended.
 *   When it does not fit, the old range drains first (new sessions refused with WRONG_LAYERS,
 *   open ones finish, at most FOLLOW_ALLOCATION_DRAIN_MS), then closes, then the new one loads;
 *   a `serving-drain` log event says so with the figures.
 * No range (or no allocation yet): nothing served.
 */
export function followAllocation (host: MyceliumHost, opened: OpenedModel, config: ModelConfig, model: NodeModel, log: Logger, options: FollowOptions = {}): { stop: () => Promise<void> } {
  return followAllocationOf({ service: host.services.inference, model, self: host.peerId.toString() }, opened, config, log, options)
}

export interface FollowOptions {
  /** Default FOLLOW_ALLOCATION_POLL_MS. */
  pollMs?: number
  /** Default FOLLOW_ALLOCATION_DRAIN_MS. */
  drainMs?: number
  /** Default FOLLOW_ALLOCATION_SETTLE_MS. */
  settleMs?: number
}

/** `followAllocation` over its parts (tests drive it with a real engine and a scripted allocator). */
export function followAllocationOf (target: FollowTarget, opened: OpenedModel, config: ModelConfig, log: Logger, options: FollowOptions = {}): { stop: () => Promise<void> } {
  const { service, model } = target
  const settleMs = options.settleMs ?? FOLLOW_ALLOCATION_SETTLE_MS
  // what the node record publishes as served: set when it changes, then an allocation pass
  // publishes it (and the recomputed waves let the next wave start). A failing pass must not undo
  // the serving bookkeeping: the allocator's timer publishes on its next pass
  const announce = (range: { start: number, end: number } | null): void => {
    model.served = range === null ? null : { start: range.start, end: range.end }
    try {
      model.allocator?.refresh()
    } catch (err) {
      log.warn({ event: 'allocation-failed', err: (err as Error).message }, 'allocation pass failed; the served range is published on the next one')
    }
  }
  let current: { key: string, shard?: Shard } = { key: '' }
  // a range loaded beside the old one whose switch is held (mayDrop said no)
  let pending: { key: string, shard: Shard } | undefined
  const retired: Shard[] = []
  let busy = false
  let stopped = false
  // the last wait or hold logged (each is logged once)
  let said = ''
  // since when the allocator has given this node `key`
  let since = { key: '', at: 0 }
  const say = (text: string, line: () => void): void => {
    if (said !== text) { said = text; line() }
  }
  // Right before this node stops serving `layers` for the range `key`: see followAllocation.
  const mayDrop = (key: string, layers: number[]): boolean => {
    if (layers.length === 0) return true
    const hold = (reason: string, extra: Record<string, unknown> = {}): false => {
      say(JSON.stringify([key, reason, extra]), () => { log.info({ event: 'serving-hold', target: key, reason, ...extra }, `keeping layers ${JSON.stringify(layers)} served: ${reason}`) })
      return false
    }
    if (Date.now() - since.at < settleMs) return hold('settle', { settleMs })
    let fresh: AllocationView | undefined
    try {
      fresh = model.allocator?.refresh()
    } catch (err) {
      return hold('allocation-failed', { err: (err as Error).message })
    }
    if (fresh === undefined) return true
    if (keyOf(fresh.self) !== key) return hold('target-changed', { now: keyOf(fresh.self) })
    const verdict = mayGiveUp({ waves: fresh.waves, uncovered: fresh.uncovered, served: fresh.served, target: fresh.assignments, published: fresh.published }, target.self, layers)
    return verdict.ok ? true : hold(verdict.reason, verdict.reason === 'no-holder' ? { layers: verdict.layers } : {})
  }
  const closeIdle = async (): Promise<void> => {
    for (const old of [...retired]) {
      if (service.sessionsOn(old) > 0) continue
      retired.splice(retired.indexOf(old), 1)
      await old.close()
    }
  }
  const tick = async (): Promise<void> => {
    if (busy || stopped) return
    busy = true
    try {
      await closeIdle()
      const view = model.allocator?.current()
      const self = view?.self ?? null
      const key = keyOf(self)
      if (since.key !== key) since = { key, at: Date.now() }
      if (pending !== undefined && pending.key !== key) {
        await pending.shard.close()
        pending = undefined
      }
      if (key === current.key) return
      const wave = waveOf(view?.waves ?? [], target.self)
      if (wave > 0) {
        say(key, () => { log.info({ event: 'serving-wait', start: self?.start ?? null, end: self?.end ?? null, wave, waves: view?.waves.length }, `moving to ${key === '' ? 'no layers' : `[${key.replace(':', ', ')})`} after wave ${wave - 1} landed`) })
        return
      }
      const t0 = performance.now()
      let shard = pending?.shard
      if (shard === undefined && self !== null) {
        const budget = model.capability?.memoryBytes
        const loaded = [...retired, ...(current.shard !== undefined ? [current.shard] : [])].reduce((n, sh) => n + sh.weightBytes, 0)
        // the manifest's figure, scaled by what the engine really took for the range loaded now
        // (scratch, alignment and tables come on top of the tensors: 1.2-1.7x on stories260K)
        const manifest = model.manifest
        const scale = current.shard === undefined || manifest === undefined ? 1 : Math.max(1, current.shard.weightBytes / rangeWeightBytes(manifest, opened.dtype, current.shard))
        const needed = manifest === undefined ? 0 : Math.round(scale * rangeWeightBytes(manifest, opened.dtype, self))
        const kv = service.usage.reservedBytes
        if (budget !== undefined && loaded > 0 && loaded + kv + needed > budget) {
          if (!mayDrop(key, layersGivenUp(current.shard, null))) return
          log.info({ event: 'serving-drain', start: self.start, end: self.end, loadedBytes: loaded, kvReservedBytes: kv, neededBytes: needed, budgetBytes: budget }, 'the new range does not fit beside the old one: draining the old range before loading')
          service.serve(undefined)
          announce(null)
          if (current.shard !== undefined) retired.push(current.shard)
          current = { key: '' }
          const deadline = Date.now() + (options.drainMs ?? FOLLOW_ALLOCATION_DRAIN_MS)
          while (retired.some((sh) => service.sessionsOn(sh) > 0) && Date.now() < deadline && !stopped) {
            await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? FOLLOW_ALLOCATION_POLL_MS))
          }
          await Promise.all(retired.splice(0).map(async (sh) => { await sh.close() }))
          if (stopped) return
        }
        shard = timedShard(await loadShard(opened.source, { start: self.start, end: self.end, dtype: opened.dtype, threads: config.threads, onProgress: loadProgress(`layers [${self.start}, ${self.end})`, { log }) }), () => model.stepTimer)
        if (stopped) { await shard.close(); return }
      }
      // the switch drops the old range's layers the new one lacks: re-checked on a fresh pass (the
      // view above is a pass old, and the load took time); a held range stays loaded for the next tick
      if (!mayDrop(key, layersGivenUp(current.shard, self))) {
        pending = shard === undefined ? undefined : { key, shard }
        return
      }
      pending = undefined
      said = ''
      service.serve(shard === undefined ? undefined : { shard, get model () { return model.manifest?.id } })
      if (current.shard !== undefined) retired.push(current.shard)
      current = { key, ...(shard !== undefined ? { shard } : {}) }
      log.info({ event: 'serving', start: self?.start ?? null, end: self?.end ?? null, auto: true, protocol: service.protocol, weightBytes: shard?.weightBytes ?? 0, ms: Math.round(performance.now() - t0) }, self === null ? 'serving no layers' : `serving layers [${self.start}, ${self.end}) (allocation)`)
      announce(self)
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
      model.served = null
      const open = [...retired.splice(0), ...(current.shard !== undefined ? [current.shard] : []), ...(pending !== undefined ? [pending.shard] : [])]
      pending = undefined
      await Promise.all(open.map(async (s) => { await s.close() }))
    }
  }
}
