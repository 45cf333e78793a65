// Stop strings over a stream of text pieces: text is released as soon as it cannot be the start
// of a stop string; once a stop string appears, everything from it on is dropped.

export interface StopCut {
  /** Text to release now. */
  text: string
  /** A stop string was found: generation should end. */
  stopped: boolean
}

export interface StopMatcher {
  push: (piece: string) => StopCut
  /** The end of the stream: releases what was held back (up to a stop string in it). */
  flush: (last?: string) => StopCut
}

export function stopMatcher (stops: readonly string[]): StopMatcher {
  let held = ''
  let stopped = false
  const cut = (buffer: string, final: boolean): StopCut => {
    if (stopped) return { text: '', stopped }
    let at = -1
    for (const s of stops) {
      const i = buffer.indexOf(s)
      if (i >= 0 && (at < 0 || i < at)) at = i
    }
    if (at >= 0) { stopped = true; held = ''; return { text: buffer.slice(0, at), stopped } }
    if (final) { held = ''; return { text: buffer, stopped } }
    // hold back the longest suffix that is a proper prefix of some stop string
    let keep = 0
    for (const s of stops) {
      for (let n = Math.min(s.length - 1, buffer.length); n > keep; n--) {
        if (buffer.endsWith(s.slice(0, n))) { keep = n; break }
      }
    }
    held = buffer.slice(buffer.length - keep)
    return { text: buffer.slice(0, buffer.length - keep), stopped }
  }
  return {
    push: (piece) => cut(held + piece, false),
    flush: (last = '') => cut(held + last, true)
  }
}
