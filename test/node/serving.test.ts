// `--layers auto` (node/serving.ts followAllocationOf) with the real engine (stories260K shards
// loaded and closed for real) and a scripted allocator: a move in a later wave waits until the
// plan has it in wave 0; a new range that fits beside the old one loads while the old one serves
// and the old shard closes once its sessions ended; one that does not fit the memory budget
// drains the old range first (new sessions refused), then loads, with a `serving-drain` event.
import { pino } from 'pino'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import type { Shard } from '../../engine/index.ts'
import { rangeWeightBytes, followAllocationOf, waveOf } from '../../node/serving.ts'
import type { FollowTarget } from '../../node/serving.ts'
import type { AllocationView } from '../../node/allocation.ts'
import type { OpenedModel } from '../../node/model-startup.ts'
import { manifestFromConfig } from '../../sharding/index.ts'
import type { ModelManifest, Move } from '../../sharding/index.ts'
import { STORIES260K } from '../models.ts'
import { pollUntil } from './daemons.ts'

const SELF = 'self-peer'
let opened: OpenedModel
let manifest: ModelManifest

beforeAll(async () => {
  opened = { source: await openLlama2c(STORIES260K), dtype: 'f32' }
  manifest = manifestFromConfig(opened.source.config)
})

/** A scripted world: the allocator's view, a stage service that records serve() and reports sessions, a log. */
function world (budget: number): {
  target: FollowTarget
  setView: (self: { start: number, end: number } | null, waves?: Move[][]) => void
  served: Array<Shard | undefined>
  sessions: Map<Shard, number>
  events: Array<Record<string, unknown>>
  capability: { memoryBytes: number }
  /** sessionsOn() calls so far (each poll asks it of every retired shard). */
  queries: () => number
} {
  let view: AllocationView | undefined
  const served: Array<Shard | undefined> = []
  const sessions = new Map<Shard, number>()
  const events: Array<Record<string, unknown>> = []
  let queries = 0
  const capability = { decodeLayerMs: 1, prefillLayerMsPerToken: 0.1, memoryBytes: budget }
  const target: FollowTarget = {
    self: SELF,
    service: {
      protocol: '/mycelium/test/inference/1.0.0',
      serve: (stage) => { served.push(stage?.shard) },
      sessionsOn: (shard) => { queries++; return sessions.get(shard) ?? 0 },
      get usage () { return { sessions: [...sessions.values()].reduce((a, b) => a + b, 0), reservedBytes: 0, kvBytes: 0 } }
    },
    model: {
      manifest,
      capability,
      allocator: { current: () => view, refresh: () => view as AllocationView, stop: () => {} }
    }
  }
  const setView = (self: { start: number, end: number } | null, waves: Move[][] = []): void => {
    view = { model: manifest.id, dtype: 'f32', nLayers: 5, members: [SELF], assignments: [], pipelines: [], tokensPerS: 0, covered: true, mode: 'rebalance', kept: false, waves, uncovered: [], served: [], published: [], pinned: [], self, computedAt: Date.now() }
  }
  return { target, setView, served, sessions, events, capability, queries: () => queries }
}

const stops: Array<() => Promise<void>> = []
afterEach(async () => { await Promise.all(stops.splice(0).map(async (s) => { await s() })) })

function follow (w: ReturnType<typeof world>, settleMs = 0): void {
  const log = pino({ level: 'info' }, { write: (line: string) => { w.events.push(JSON.parse(line) as Record<string, unknown>) } })
  const f = followAllocationOf(w.target, opened, { path: STORIES260K, threads: 1, manifestCacheDir: '' }, log, { pollMs: 10, drainMs: 10_000, settleMs })
  stops.push(f.stop)
}

/** Marks when `sh` is closed (the engine's shard has no observable closed state). */
function watchClose (sh: Shard): { closed: boolean } {
  const state = { closed: false }
  const close = sh.close.bind(sh)
  Object.assign(sh, { close: async () => { state.closed = true; await close() } })
  return state
}

const range = (sh: Shard | undefined): [number, number] | undefined => (sh === undefined ? undefined : [sh.start, sh.end])

describe('--layers auto follows the allocator', () => {
  it('waveOf finds this node\'s move in the plan', () => {
    const waves: Move[][] = [[{ peerId: 'a', to: { start: 0, end: 2 } }], [{ peerId: SELF, from: { start: 0, end: 2 }, to: { start: 2, end: 5 } }]]
    expect(waveOf(waves, SELF)).toBe(1)
    expect(waveOf(waves, 'a')).toBe(0)
    expect(waveOf(waves, 'b')).toBe(-1)
    expect(waveOf([], SELF)).toBe(-1)
  })

  it('a move in wave 1 waits (old range still served) until the recomputed plan has it in wave 0', async () => {
    const w = world(1e9)
    w.setView({ start: 0, end: 2 })
    follow(w)
    await pollUntil('the first range', async () => (w.served.length === 1 ? true : undefined), 10_000, 10)
    expect(range(w.served[0])).toEqual([0, 2])
    const mine: Move = { peerId: SELF, from: { start: 0, end: 2 }, to: { start: 2, end: 5 } }
    w.setView({ start: 2, end: 5 }, [[{ peerId: 'joiner', to: { start: 0, end: 2 } }], [mine]])
    await pollUntil('the wait event', async () => (w.events.some((e) => e.event === 'serving-wait') ? true : undefined), 10_000, 10)
    expect(w.served).toHaveLength(1) // nothing switched, nothing dropped
    expect(w.events.find((e) => e.event === 'serving-wait')).toMatchObject({ start: 2, end: 5, wave: 1 })
    w.setView({ start: 2, end: 5 }, [[mine]]) // the joiner landed: the plan has only our move left
    await pollUntil('the move', async () => (w.served.length === 2 ? true : undefined), 10_000, 10)
    expect(range(w.served[1])).toEqual([2, 5])
  })

  it('fits beside: the new range loads while the old serves; the old shard closes once its session ended', async () => {
    const w = world(1e9)
    w.setView({ start: 0, end: 2 })
    follow(w)
    await pollUntil('the first range', async () => (w.served.length === 1 ? true : undefined), 10_000, 10)
    const old = w.served[0] as Shard
    const watch = watchClose(old)
    w.sessions.set(old, 1) // one session still running on [0, 2)
    w.setView({ start: 2, end: 5 })
    await pollUntil('the new range', async () => (w.served.length === 2 ? true : undefined), 10_000, 10)
    expect(w.served.map(range)).toEqual([[0, 2], [2, 5]]) // never undefined in between: no gap
    expect(w.events.some((e) => e.event === 'serving-drain')).toBe(false)
    const asked = w.queries()
    await pollUntil('three more polls of the old shard\'s sessions', async () => (w.queries() >= asked + 3 ? true : undefined), 10_000, 10)
    expect(watch.closed).toBe(false) // kept for its session
    w.sessions.set(old, 0)
    await pollUntil('the old shard to close', async () => (watch.closed ? true : undefined), 10_000, 10)
  })

  it('does not fit beside: drains the old range (sessions finish, new ones refused), closes it, then loads', async () => {
    const w = world(1e9)
    w.setView({ start: 0, end: 2 })
    follow(w)
    await pollUntil('the first range', async () => (w.served.length === 1 ? true : undefined), 10_000, 10)
    const old = w.served[0] as Shard
    const watch = watchClose(old)
    let closedBeforeLoad: boolean | undefined
    const serve = w.target.service.serve
    w.target.service.serve = (stage) => { if (stage !== undefined && stage.shard !== old) closedBeforeLoad = watch.closed; serve(stage) }
    const needed = rangeWeightBytes(manifest, 'f32', { start: 2, end: 5 })
    w.capability.memoryBytes = needed + Math.floor(old.weightBytes / 2) // the new range alone fits, not both
    w.sessions.set(old, 1)
    w.setView({ start: 2, end: 5 })
    await pollUntil('the drain event', async () => w.events.find((e) => e.event === 'serving-drain'), 10_000, 10)
    const drain = w.events.find((e) => e.event === 'serving-drain') as Record<string, number>
    expect(drain).toMatchObject({ start: 2, end: 5, loadedBytes: old.weightBytes, budgetBytes: w.capability.memoryBytes })
    // the manifest's estimate scaled by what the engine took for [0, 2) beyond its estimate
    expect(drain.neededBytes).toBe(Math.round(needed * Math.max(1, old.weightBytes / rangeWeightBytes(manifest, 'f32', old))))
    expect(w.served.map(range)).toEqual([[0, 2], undefined]) // new sessions refused while draining
    w.sessions.set(old, 0) // the last session on [0, 2) ended
    await pollUntil('the new range', async () => (w.served.length === 3 ? true : undefined), 10_000, 10)
    expect(range(w.served[2])).toEqual([2, 5])
    expect(closedBeforeLoad).toBe(true) // closed before the new one was loaded and served
  })

  it('gives up layers only once the new range has been its target for settleMs (beside: loaded meanwhile)', async () => {
    const w = world(1e9)
    w.setView({ start: 0, end: 2 })
    follow(w, 300)
    await pollUntil('the first range', async () => (w.served.length === 1 ? true : undefined), 10_000, 10)
    const t0 = Date.now()
    w.setView({ start: 2, end: 5 })
    const hold = await pollUntil('the settle hold', async () => w.events.find((e) => e.event === 'serving-hold'), 10_000, 10)
    expect(hold).toMatchObject({ reason: 'settle', target: '2:5', settleMs: 300 })
    await pollUntil('the new range', async () => (w.served.length === 2 ? true : undefined), 10_000, 10)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300)
    expect(w.served.map(range)).toEqual([[0, 2], [2, 5]])
  })

  it('rangeWeightBytes counts the embedding table on the first stage and the head (tied: the table) on the last', () => {
    const layer = manifest.layerBytes.f32
    expect(rangeWeightBytes(manifest, 'f32', { start: 1, end: 3 })).toBe(2 * layer)
    expect(rangeWeightBytes(manifest, 'f32', { start: 0, end: 1 })).toBe(layer + manifest.embeddingBytes)
    expect(rangeWeightBytes(manifest, 'f32', { start: 4, end: 5 })).toBe(layer + (manifest.headBytes > 0 ? manifest.headBytes : manifest.embeddingBytes))
    // the whole model holds a tied table once
    expect(rangeWeightBytes(manifest, 'f32', { start: 0, end: 5 })).toBe(5 * layer + manifest.embeddingBytes + manifest.headBytes)
  })
})
