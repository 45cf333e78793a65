// `--layers auto` while the allocation's targets change under a moving node (node/serving.ts
// followAllocationOf, the real engine loading and closing stories260K shards): a small scripted
// swarm of followers and fixed peers, each follower with its own allocator answer (what
// computeAllocation would give on its inputs: new RTTs reach nodes at different times) and the
// real planMoves over the served and published ranges. The view a node acts on may be a pass
// old; a node must not drop the last server of a layer because of it:
// - the view read before a load (or a drain) said "wave 0, a peer holds your layers", and by the
//   switch that peer had left: the fresh pass puts the move in a later wave, so the node holds;
// - two nodes each computed that the other keeps [0, 2): each sees the other publish another
//   target, so both hold until their answers agree, then exactly one moves;
// - a swap under tight memory that no order keeps covered still completes (no deadlock).
import { pino } from 'pino'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { followAllocationOf, layersGivenUp } from '../../node/serving.ts'
import type { FollowTarget } from '../../node/serving.ts'
import type { AllocationView } from '../../node/allocation.ts'
import type { OpenedModel } from '../../node/model-startup.ts'
import { manifestFromConfig, planMoves } from '../../sharding/index.ts'
import type { Assignment, LayerRange, ModelManifest } from '../../sharding/index.ts'
import { STORIES260K } from '../models.ts'
import { pollUntil } from './daemons.ts'

type Range = LayerRange | null
const N_LAYERS = 5 // stories260K
let opened: OpenedModel
let manifest: ModelManifest

beforeAll(async () => {
  opened = { source: await openLlama2c(STORIES260K), dtype: 'f32' }
  manifest = manifestFromConfig(opened.source.config)
})

const r = (start: number, end: number): LayerRange => ({ start, end })

interface Follower {
  id: string
  target: FollowTarget
  /** This node's allocator answer: every member's target, as it computes them. */
  alloc: Map<string, Range>
  /** The target its last pass published. */
  published: Range
  /** What its stage service hands new sessions now. */
  serving: Range
  events: Array<Record<string, unknown>>
  /** Its allocator's last pass (what `current()` returns). */
  view?: AllocationView
  /** Runs once, right after the follower next reads its (cached) view. */
  afterRead?: () => void
}

/**
 * A swarm: followers (followAllocationOf over the real engine) and fixed peers (records the test
 * sets, as well-behaved peers would). `holes` records every instant, once armed, at which some
 * layer had nobody serving it to new sessions.
 */
function swarm () {
  const fixed = new Map<string, { served: Range, published: Range }>()
  const followers = new Map<string, Follower>()
  const holes: Array<{ holes: number[], serving: Record<string, Range> }> = []
  let armed = false
  const members = (): string[] => [...new Set([...fixed.keys(), ...followers.keys()])].sort()
  const servedOf = (id: string): Range => followers.get(id)?.target.model.served ?? fixed.get(id)?.served ?? null
  const servingOf = (id: string): Range => followers.get(id)?.serving ?? fixed.get(id)?.served ?? null
  const publishedOf = (id: string): Range => { const f = followers.get(id); return f !== undefined ? f.published : fixed.get(id)?.published ?? null }
  const list = (get: (id: string) => Range): Assignment[] => members().flatMap((id) => { const x = get(id); return x === null ? [] : [{ peerId: id, start: x.start, end: x.end }] })
  const check = (): void => {
    if (!armed) return
    const now = Object.fromEntries(members().map((id) => [id, servingOf(id)]))
    const dark: number[] = []
    for (let l = 0; l < N_LAYERS; l++) if (!Object.values(now).some((x) => x !== null && x.start <= l && l < x.end)) dark.push(l)
    if (dark.length > 0) holes.push({ holes: dark, serving: now })
  }
  /** One allocation pass of `f`, as node/allocation.ts runs it: plan from the served ranges to its answer, publish its target. */
  const pass = (f: Follower): AllocationView => {
    const served = list(servedOf)
    const assignments = list((id) => f.alloc.get(id) ?? null)
    const { waves, uncovered } = planMoves(served, assignments, N_LAYERS)
    const view: AllocationView = { model: manifest.id, dtype: 'f32', nLayers: N_LAYERS, members: members(), assignments, pipelines: [], tokensPerS: 0, covered: true, mode: 'rebalance', kept: false, waves, uncovered, served, published: list(publishedOf), pinned: [], self: f.alloc.get(f.id) ?? null, computedAt: Date.now() }
    f.published = view.self
    return view
  }
  // a record change reaches every follower at once and runs its pass
  const passAll = (): void => { for (const f of followers.values()) f.view = pass(f) }
  const stops: Array<() => Promise<void>> = []
  const follow = (id: string, alloc: Record<string, Range>, memoryBytes = 1e9): Follower => {
    const f: Follower = {
      id,
      alloc: new Map(Object.entries(alloc)),
      published: null,
      serving: null,
      events: [],
      target: {
        self: id,
        service: {
          protocol: '/mycelium/test/inference/1.0.0',
          serve: (stage) => { f.serving = stage === undefined ? null : r(stage.shard.start, stage.shard.end); check() },
          sessionsOn: () => 0,
          usage: { sessions: 0, reservedBytes: 0, kvBytes: 0 }
        },
        model: {
          manifest,
          capability: { decodeLayerMs: 1, prefillLayerMsPerToken: 0.1, memoryBytes },
          served: null,
          allocator: {
            current: () => {
              const v = f.view
              const after = f.afterRead
              f.afterRead = undefined
              after?.()
              return v
            },
            refresh: () => { passAll(); return f.view as AllocationView },
            stop: () => {}
          }
        }
      }
    }
    followers.set(id, f)
    passAll()
    const log = pino({ level: 'info' }, { write: (line: string) => { f.events.push(JSON.parse(line) as Record<string, unknown>) } })
    stops.push(followAllocationOf(f.target, opened, { path: STORIES260K, threads: 1, manifestCacheDir: '' }, log, { pollMs: 10, drainMs: 10_000, settleMs: 0 }).stop)
    return f
  }
  return {
    follow,
    /** Sets a fixed peer's record (what it serves, the target it publishes). */
    peer: (id: string, served: Range, published: Range = served): void => { fixed.set(id, { served, published }); check(); passAll() },
    /** Re-runs every follower's allocation pass (a swarm-state change). */
    passAll,
    arm: (): void => { armed = true; check() },
    holes,
    stop: async (): Promise<void> => { await Promise.all(stops.splice(0).map(async (s) => { await s() })) }
  }
}

let current: ReturnType<typeof swarm> | undefined
afterEach(async () => { await current?.stop(); current = undefined })

const key = (x: Range): string => (x === null ? 'none' : `${x.start}:${x.end}`)
async function serving (f: Follower, x: Range): Promise<void> {
  await pollUntil(`${f.id} to serve ${key(x)}`, async () => (key(f.serving) === key(x) && key(f.target.model.served ?? null) === key(x) ? true : undefined), 10_000, 10)
}
/** Waits until `f` holds its move for `reason` or some layer went dark; asserts none did. */
async function held (s: ReturnType<typeof swarm>, f: Follower, reason: string): Promise<Record<string, unknown>> {
  const hold = (): Record<string, unknown> | undefined => f.events.find((e) => e.event === 'serving-hold' && e.reason === reason)
  await pollUntil(`${f.id} to hold (${reason}) or a layer to go dark`, async () => (s.holes.length > 0 || hold() !== undefined ? true : undefined), 10_000, 10)
  expect(s.holes, 'a layer went unserved').toEqual([])
  return hold() as Record<string, unknown>
}

/**
 * self serves [0, 2) beside p; q serves [2, 5). The allocator moves self to [2, 5), p keeping
 * [0, 2): wave 0. Right after self read that view, p (by its own newer answer) moved to [2, 5)
 * and q is to take [0, 2): on a fresh pass self's move is in the last wave.
 */
async function staleWaveZero (memoryBytes: number): Promise<{ s: ReturnType<typeof swarm>, self: Follower }> {
  const s = swarm()
  current = s
  s.peer('p', r(0, 2))
  s.peer('q', r(2, 5))
  const self = s.follow('self', { self: r(0, 2), p: r(0, 2), q: r(2, 5) }, memoryBytes)
  await serving(self, r(0, 2))
  s.arm()
  self.alloc = new Map(Object.entries({ self: r(2, 5), p: r(0, 2), q: r(2, 5) }))
  self.afterRead = () => {
    // p moves by its own answer (self still serves [0, 2): no hole), q publishes its new target
    s.peer('p', null, r(2, 5))
    s.peer('q', r(2, 5), r(0, 2))
    self.alloc = new Map(Object.entries({ self: r(2, 5), p: r(2, 5), q: r(0, 2) }))
  }
  s.passAll() // self's cached view: its move in wave 0, p holding [0, 2)
  return { s, self }
}

/** The waves the fresh pass asked for land: p serves [2, 5), then q moves to [0, 2). */
async function landTheOthers (s: ReturnType<typeof swarm>, self: Follower): Promise<void> {
  s.peer('p', r(2, 5))
  s.peer('q', null, r(0, 2)) // q's move: it drains [2, 5) (p serves it now), then loads [0, 2)
  s.peer('q', r(0, 2))
  await serving(self, r(2, 5))
}

describe('--layers auto while targets change mid-move', () => {
  it('layersGivenUp: the old range\'s layers the new one lacks', () => {
    expect(layersGivenUp(r(0, 3), r(2, 5))).toEqual([0, 1])
    expect(layersGivenUp(r(0, 3), null)).toEqual([0, 1, 2])
    expect(layersGivenUp(r(1, 3), r(0, 5))).toEqual([])
    expect(layersGivenUp(undefined, r(0, 5))).toEqual([])
  })

  it('beside: the switch is re-checked on a fresh pass — a view read before the load does not drop the last server', async () => {
    const { s, self } = await staleWaveZero(1e9)
    const hold = await held(s, self, 'later-wave')
    expect(hold).toMatchObject({ target: '2:5' })
    expect(self.serving).toEqual(r(0, 2)) // [2, 5) loaded beside, not switched to
    expect(s.holes).toEqual([])
    await landTheOthers(s, self)
    expect(s.holes).toEqual([])
  })

  it('drain: a drain from a view read a pass ago waits for the fresh plan', async () => {
    const { s, self } = await staleWaveZero(1) // nothing fits beside: every move drains
    await held(s, self, 'later-wave')
    expect(self.serving).toEqual(r(0, 2))
    expect(self.events.some((e) => e.event === 'serving-drain')).toBe(false)
    await landTheOthers(s, self)
    expect(self.events.some((e) => e.event === 'serving-drain')).toBe(true)
    expect(s.holes).toEqual([])
  })

  it('two nodes each counting on the other to keep [0, 2): both hold until their answers agree, then one moves', async () => {
    const s = swarm()
    current = s
    s.peer('q', r(2, 5))
    const before = { a: r(0, 2), b: r(0, 2), q: r(2, 5) }
    const a = s.follow('a', before)
    const b = s.follow('b', before)
    await serving(a, r(0, 2))
    await serving(b, r(0, 2))
    s.arm()
    // new RTTs: a's answer moves a, b's answer moves b; each plan has the other holding [0, 2)
    a.alloc = new Map(Object.entries({ a: r(2, 5), b: r(0, 2), q: r(2, 5) }))
    b.alloc = new Map(Object.entries({ a: r(0, 2), b: r(2, 5), q: r(2, 5) }))
    s.passAll()
    const ha = await held(s, a, 'no-holder')
    const hb = await held(s, b, 'no-holder')
    expect(ha.layers).toEqual([0, 1])
    expect(hb.layers).toEqual([0, 1])
    expect([a.serving, b.serving]).toEqual([r(0, 2), r(0, 2)])
    // the RTT records reached both: the same answer everywhere
    const agreed = { a: r(2, 5), b: r(0, 2), q: r(2, 5) }
    b.alloc = new Map(Object.entries(agreed))
    a.alloc = new Map(Object.entries(agreed))
    s.passAll()
    await serving(a, r(2, 5))
    expect(b.serving).toEqual(r(0, 2))
    expect(s.holes).toEqual([])
  })

  it('a swap under tight memory that no order keeps covered still completes (the plan\'s uncovered layers need no holder)', async () => {
    const s = swarm()
    current = s
    const before = { a: r(0, 2), b: r(2, 5) }
    const a = s.follow('a', before, 1)
    const b = s.follow('b', before, 1)
    await serving(a, r(0, 2))
    await serving(b, r(2, 5))
    const swapped = { a: r(2, 5), b: r(0, 2) }
    a.alloc = new Map(Object.entries(swapped))
    b.alloc = new Map(Object.entries(swapped))
    s.passAll()
    await serving(a, r(2, 5))
    await serving(b, r(0, 2))
  })
})
