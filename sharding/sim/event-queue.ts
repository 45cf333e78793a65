// A binary min-heap of timed callbacks; ties run in scheduling order, so runs are deterministic.

interface Entry { t: number, seq: number, fn: () => void }

export class EventQueue {
  private readonly heap: Entry[] = []
  private seq = 0
  now = 0
  processed = 0

  get size (): number { return this.heap.length }

  at (t: number, fn: () => void): void {
    const e = { t: Math.max(t, this.now), seq: this.seq++, fn }
    const h = this.heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (less(h[p], e)) break
      h[i] = h[p]
      i = p
    }
    h[i] = e
  }

  after (ms: number, fn: () => void): void { this.at(this.now + ms, fn) }

  /** Runs events in time order until the queue is empty or the next one is after `until`. */
  run (until: number): void {
    const h = this.heap
    while (h.length > 0 && h[0].t <= until) {
      const top = h[0]
      const last = h.pop() as Entry
      if (h.length > 0) {
        let i = 0
        for (;;) {
          const l = 2 * i + 1
          if (l >= h.length) break
          const r = l + 1
          const c = r < h.length && less(h[r], h[l]) ? r : l
          if (less(last, h[c])) break
          h[i] = h[c]
          i = c
        }
        h[i] = last
      }
      this.now = top.t
      this.processed++
      top.fn()
    }
    this.now = Math.max(this.now, until)
  }
}

function less (a: Entry, b: Entry): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq)
}
