// AutoNAT v2 in libp2p 3.3 asks peers to verify our addresses only when a connection to an
// AutoNAT server opens (and on a 60 s random walk that skips peers we are already connected
// to). A UPnP mapping appears a few seconds *after* we connected to our anchors, so it would wait
// for the next new connection. This nudge asks the AutoNAT client to verify again over the
// connections we already have whenever a new unverified public address shows up. It calls
// `verifyExternalAddresses`, an internal of @libp2p/autonat-v2 (checked at start-up, logged when
// missing); test/netlab pins the behaviour (UPnP address confirmed).
import type { Connection } from '@libp2p/interface'
import { isPrivate } from '@libp2p/utils'
import type { Logger } from 'pino'
import type { MyceliumHost } from './host.ts'
import { AUTONAT_RENUDGE_MS, STATUS_INTERVAL_MS } from './constants.ts'

const DIAL_REQUEST = '/libp2p/autonat/2/dial-request'

interface AutoNATClient { verifyExternalAddresses: (connection: Connection) => Promise<void> }

/** Starts the nudge; returns a function that stops it. */
export function startAutoNATNudge (host: MyceliumHost, log: Logger): () => void {
  const client = (host.services.autoNAT as { client?: Partial<AutoNATClient> } | undefined)?.client
  if (typeof client?.verifyExternalAddresses !== 'function') {
    log.warn({ event: 'autonat-nudge-unavailable' }, '@libp2p/autonat-v2 internals changed: new UPnP addresses wait for the next AutoNAT connection')
    return () => {}
  }
  const verify = client.verifyExternalAddresses.bind(client)
  const nudged = new Map<string, number>()
  const check = async (): Promise<void> => {
    const pending = host.services.reachability.unverifiedPublicAddresses()
      .filter((a) => isPrivate(a) !== true)
      .filter((a) => Date.now() - (nudged.get(a.toString()) ?? 0) > AUTONAT_RENUDGE_MS)
    if (pending.length === 0) return
    for (const a of pending) nudged.set(a.toString(), Date.now())
    for (const connection of host.getConnections()) {
      if (connection.limits != null) continue
      const peer = await host.peerStore.get(connection.remotePeer).catch(() => undefined)
      if (peer?.protocols.includes(DIAL_REQUEST) !== true) continue
      log.info({ event: 'autonat-nudge', addrs: pending.map(String), peer: connection.remotePeer.toString() }, 'asking an AutoNAT server to verify new addresses')
      await verify(connection).catch((err: Error) => { log.debug({ err: err.message }, 'autonat verify failed') })
    }
  }
  const timer = setInterval(() => { void check() }, STATUS_INTERVAL_MS)
  return () => { clearInterval(timer) }
}
