// Keeps this node connected to its bootstrap peers. @libp2p/bootstrap dials them once at start;
// when an anchor restarts (it is also our relay) libp2p's reconnect queue gives up after a few
// tries. The keeper re-dials every disconnected bootstrap peer with a capped backoff, so the
// relay transport finds the relay again and re-reserves (netlab test 4: within 30 s).
import type { Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import type { MyceliumHost } from './host.ts'
import { BOOTSTRAP_REDIAL_MAX_MS, STATUS_INTERVAL_MS } from './constants.ts'

/** Starts the keeper; returns a function that stops it. */
export function startBootstrapKeeper (host: MyceliumHost, bootstrap: Multiaddr[], log: Logger): () => void {
  const state = bootstrap.map((addr) => ({
    addr,
    peer: peerIdFromString(addr.getComponents().find((c) => c.name === 'p2p')?.value ?? ''),
    nextTry: 0,
    backoff: STATUS_INTERVAL_MS,
    dialing: false
  }))
  const tick = (): void => {
    for (const s of state) {
      if (s.dialing || host.getConnections(s.peer).length > 0) {
        if (!s.dialing) s.backoff = STATUS_INTERVAL_MS
        continue
      }
      if (Date.now() < s.nextTry) continue
      s.dialing = true
      host.dial(s.addr, { signal: AbortSignal.timeout(BOOTSTRAP_REDIAL_MAX_MS) }).then(() => {
        log.info({ event: 'bootstrap-reconnected', peer: s.peer.toString() }, 'reconnected to a bootstrap peer')
        s.backoff = STATUS_INTERVAL_MS
      }, (err: Error) => {
        log.debug({ event: 'bootstrap-redial-failed', peer: s.peer.toString(), err: err.message }, 'bootstrap peer unreachable')
        s.nextTry = Date.now() + s.backoff
        s.backoff = Math.min(s.backoff * 2, BOOTSTRAP_REDIAL_MAX_MS)
      }).finally(() => { s.dialing = false })
    }
  }
  const timer = setInterval(tick, STATUS_INTERVAL_MS)
  return () => { clearInterval(timer) }
}
