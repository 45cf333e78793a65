// `--layers auto` moves are staggered for real: node records publish the range a daemon SERVES
// (loaded and answering) and the allocator's range as its target (`layersTarget`), so the
// allocator's waves are recomputed from what has really landed. Real daemons with tight memory
// join one by one and the allocation reshuffles. Polling a daemon's replica meanwhile: every
// range a record names is one its daemon had already loaded and served by then (before this
// change a record named the allocator's range before the node loaded it), and from the moment the
// model is first covered no layer goes unserved again — checked on the records and on every
// daemon's own serving log (load/drain timeline).
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { controlRequest } from '../../node/control.ts'
import type { NodeRecord } from '../../crdt/index.ts'
import { STORIES260K } from '../models.ts'
import { cleanupDaemons, pollUntil, scratch, startDaemon, tcpAddr, type Started } from './daemons.ts'

const SWARM = 'moves'
const N_LAYERS = 5

afterEach(cleanupDaemons)

/** Layers of [0, N_LAYERS) no range covers. */
function holes (ranges: Array<{ start: number, end: number } | null>): number[] {
  const out: number[] = []
  for (let l = 0; l < N_LAYERS; l++) if (!ranges.some((r) => r !== null && r.start <= l && l < r.end)) out.push(l)
  return out
}

type Timeline = Array<{ time: number, daemon: number, range: { start: number, end: number } | null }>

/** Every daemon's served range over time from its log: `serving` (loaded) and `serving-drain` (dropped). */
function timeline (daemons: Started[]): Timeline {
  const out: Timeline = []
  daemons.forEach((d, i) => {
    for (const e of d.events) {
      if (e.event === 'serving') out.push({ time: e.time as number, daemon: i, range: e.start === null ? null : { start: e.start as number, end: e.end as number } })
      if (e.event === 'serving-drain') out.push({ time: e.time as number, daemon: i, range: null })
    }
  })
  return out.sort((a, b) => a.time - b.time)
}

describe('--layers auto: staggered moves from served ranges', () => {
  it('once the model is covered, no layer goes unserved while the daemons move', async () => {
    const daemons: Started[] = []
    const snapshots: Array<Array<{ start: number, end: number } | null>> = []
    const claims: Array<{ at: number, peer: string, range: { start: number, end: number } }> = []
    const targets: string[] = []
    let polling = true
    // 16 MiB holds 3 of stories260K's 5 layers (KV reserve included), 10 MiB two, so loads drain first
    const memories = ['16M', '10M', '16M', '10M']
    const poller = (async () => {
      // one last snapshot after polling stops: the settled state (the model may have been covered
      // only since the last one)
      for (let last = false; !last;) {
        last = !polling
        if (daemons.length > 0) {
          try {
            const view = await controlRequest(join(daemons[0].dir, 'control.sock'), { cmd: 'swarm' }) as unknown as { nodes: Record<string, NodeRecord>, online: string[] }
            const at = Date.now()
            const served = Object.entries(view.nodes).filter(([id]) => view.online.includes(id)).map(([, r]) => r.layers[0] ?? null)
            snapshots.push(served)
            for (const [peer, r] of Object.entries(view.nodes)) if (r.layers[0] !== undefined) claims.push({ at, peer, range: { start: r.layers[0].start, end: r.layers[0].end } })
            for (const r of Object.values(view.nodes)) if (typeof r.capabilities.layersTarget === 'string') targets.push(r.capabilities.layersTarget)
          } catch { /* the control socket is not up yet */ }
        }
        if (!last) await new Promise((resolve) => setTimeout(resolve, 100))
      }
    })()
    try {
      for (const memory of memories) {
        daemons.push(await startDaemon(scratch('mycelium-moves-'), ['--swarm', SWARM, '--model', STORIES260K, '--max-memory', memory, '--threads', '1', ...daemons.flatMap((d) => ['--bootstrap', tcpAddr(d)])]))
        // the next joins once this one serves what the allocation gives it (or nothing)
        await pollUntil('the daemon to serve its range', async () => (daemons.at(-1)?.events.some((e) => e.event === 'serving') === true ? true : undefined), 40_000)
      }
      // settled: every daemon serves what the shared allocation says, and it covers the model
      await pollUntil('one covered allocation served by every daemon', async () => {
        const a = (await controlRequest(join(daemons[0].dir, 'control.sock'), { cmd: 'allocation' })) as unknown as { allocation: { covered: boolean, waves: unknown[][], assignments: Array<{ peerId: string, start: number, end: number }> } }
        if (!a.allocation.covered || a.allocation.waves.length > 0) return undefined
        const ids = daemons.map((d) => d.ready.peerId as string)
        const last = (i: number): Record<string, unknown> | undefined => daemons[i].events.filter((e) => e.event === 'serving' || e.event === 'serving-drain').at(-1)
        return ids.every((id, i) => {
          const mine = a.allocation.assignments.find((x) => x.peerId === id)
          const l = last(i)
          return mine === undefined ? (l === undefined || l.start === null || l.event === 'serving-drain') : (l?.event === 'serving' && l.start === mine.start && l.end === mine.end)
        }) ? true : undefined
      }, 60_000)
    } finally {
      polling = false
      await poller
    }
    // the daemons' own logs: from the first covered instant on, never a hole
    const events = timeline(daemons)
    // a record names only what its daemon had loaded and was serving by then
    const ids = daemons.map((d) => d.ready.peerId as string)
    for (const c of claims) {
      const i = ids.indexOf(c.peer)
      expect(i).toBeGreaterThanOrEqual(0)
      const loaded = events.some((e) => e.daemon === i && e.time <= c.at && e.range?.start === c.range.start && e.range.end === c.range.end)
      expect(loaded, `daemon ${i}'s record named [${c.range.start}, ${c.range.end}) at ${c.at} before it served it; its log: ${JSON.stringify(daemons[i].events.filter((e) => String(e.event).startsWith('serving')).map((e) => [e.event, e.time, e.start, e.end]))}`).toBe(true)
    }
    expect(claims.length).toBeGreaterThan(0)
    // the daemons did move (some served two ranges or more)
    expect(daemons.some((_, i) => new Set(events.filter((e) => e.daemon === i).map((e) => JSON.stringify(e.range))).size > 1)).toBe(true)
    const now = new Array<{ start: number, end: number } | null>(daemons.length).fill(null)
    let covered = false
    for (const e of events) {
      now[e.daemon] = e.range
      if (covered) {
        expect(holes(now), `after ${JSON.stringify(e)} served: ${JSON.stringify(now)}`).toEqual([])
      }
      covered ||= holes(now).length === 0
    }
    expect(covered).toBe(true)
    // the records as replicated: the same, and they carried targets
    const firstCovered = snapshots.findIndex((s) => holes(s).length === 0)
    expect(firstCovered).toBeGreaterThanOrEqual(0)
    for (const s of snapshots.slice(firstCovered)) expect(holes(s), JSON.stringify(s)).toEqual([])
    expect(targets.length).toBeGreaterThan(0)
  }, 180_000)
})
