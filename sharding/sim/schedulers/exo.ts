// exo 1.x, from ../shared/research/anchors-serving.md §2.3 (master/placement.py,
// placement_utils.py): one instance per model on the smallest set of nodes whose available RAM
// holds the model (on a LAN every subset is a cycle), the largest-RAM such set; layers split in
// proportion to RAM (floor + largest remainder, ≥ 1 each), ring in that order. A node unseen for
// 30 s (plus the 10 s master loop) deletes the instance; we re-place it at once (exo leaves that
// to the user — generous to exo). Joins do not change a running instance. No recovery mid-stream.
import type { Assignment, Move } from '../../index.ts'
import type { NodeView, Scheduler, SwarmView } from '../index.ts'

const DETECT_MS = 40_000

function place (view: SwarmView, nodes: NodeView[], dtype: 'q4_0' | 'q8_0' | 'f16'): Assignment[] {
  const L = view.manifest.nLayers
  const size = L * view.manifest.layerBytes[dtype]
  const byRam = [...nodes].sort((a, b) => b.measured.memoryBytes - a.measured.memoryBytes || (a.id < b.id ? -1 : 1))
  let k = 0
  let sum = 0
  while (k < byRam.length && sum < size) sum += byRam[k++].measured.memoryBytes
  if (sum < size || k === 0) return []
  const chosen = byRam.slice(0, k)
  const exact = chosen.map((n) => (L * n.measured.memoryBytes) / sum)
  const counts = exact.map((x) => Math.max(1, Math.floor(x)))
  let left = L - counts.reduce((a, c) => a + c, 0)
  const order = exact.map((x, i) => ({ i, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.i - b.i)
  for (let j = 0; left > 0; j = (j + 1) % order.length, left--) counts[order[j].i]++
  for (let j = counts.length - 1; left < 0; j = (j - 1 + counts.length) % counts.length) if (counts[j] > 1) { counts[j]--; left++ }
  let start = 0
  return chosen.map((n, i) => { const a = { peerId: n.id, start, end: start + counts[i] }; start += counts[i]; return a })
}

export function exoScheduler (options: { dtype?: 'q4_0' | 'q8_0' | 'f16' } = {}): Scheduler {
  const dtype = options.dtype ?? 'q4_0'
  let instance: Assignment[] = []
  const replace = (view: SwarmView): Move[][] => {
    const next = place(view, view.nodes.filter((n) => !n.leaving), dtype)
    const moves: Move[] = instance.filter((a) => !next.some((b) => b.peerId === a.peerId)).map((a) => ({ peerId: a.peerId, to: null }))
    for (const a of next) moves.push({ peerId: a.peerId, to: { start: a.start, end: a.end } })
    instance = next
    return [moves]
  }
  return {
    name: 'exo',
    recovery: 'restart',
    crashDetectMs: DETECT_MS,
    loadRefreshMs: 0,
    servesWhileLeaving: false,
    kvBytesFactor: 0.5, // MLX KV cache in f16
    tickMs: 0,
    plan (view, event) {
      if (event.type === 'init') return replace(view)
      if ((event.type === 'leave' || event.type === 'crash') && instance.some((a) => a.peerId === event.id)) return replace(view)
      if (event.type === 'join' && instance.length === 0) return replace(view)
      return undefined
    },
    route (view, _request, exclude) {
      const byId = new Map(view.nodes.map((n) => [n.id, n]))
      const ok = instance.length > 0 && instance.every((a) => byId.get(a.peerId)?.serving === true && !exclude.has(a.peerId))
      return ok ? instance : undefined
    }
  }
}
