// Teaches the peer store the addresses other nodes publish in their node records. A stage dials
// the next hop by peer id with whatever addresses its peer store holds; in a swarm with no DHT
// server (no `--public` node) whose nodes only share a bootstrap anchor, two nodes that never
// connected know no address of each other — but every record in the replicated swarm state names
// its node's addresses. Merged on every state change (debounced), only when a record's address
// list changed, at most RECORD_ADDRESSES_MAX per node (a record is the peer's own signed claim;
// a wrong address costs a failed dial, and the dial verifies the peer id).
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import type { MyceliumHost } from './host.ts'
import { RECORD_ADDRESSES_DEBOUNCE_MS, RECORD_ADDRESSES_MAX } from './constants.ts'

/** The parseable addresses of a record (at most RECORD_ADDRESSES_MAX; a bad one is skipped). */
export function recordMultiaddrs (addresses: readonly unknown[]): Multiaddr[] {
  const out: Multiaddr[] = []
  for (const a of addresses.slice(0, RECORD_ADDRESSES_MAX)) {
    if (typeof a !== 'string') continue
    try { out.push(multiaddr(a)) } catch { /* reason: a malformed address in a peer's record is skipped */ }
  }
  return out
}

/** Starts merging record addresses into the peer store; returns the stop function. */
export function startRecordAddresses (host: Pick<MyceliumHost, 'peerId' | 'peerStore' | 'services'>, log: Logger): () => void {
  const state = host.services.swarmSync.state
  const self = host.peerId.toString()
  const merged = new Map<string, string>() // peer → the address list last merged (bounded by the records)
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const pass = async (): Promise<void> => {
    timer = undefined
    const nodes = state.nodes()
    for (const peer of merged.keys()) if (!nodes.has(peer)) merged.delete(peer)
    for (const [peer, rec] of nodes) {
      if (stopped) return
      if (peer === self || !Array.isArray(rec.addresses)) continue
      const text = rec.addresses.slice(0, RECORD_ADDRESSES_MAX).join(' ')
      if (text === '' || merged.get(peer) === text) continue
      merged.set(peer, text)
      const multiaddrs = recordMultiaddrs(rec.addresses)
      if (multiaddrs.length === 0) continue
      try {
        await host.peerStore.merge(peerIdFromString(peer), { multiaddrs })
        log.debug({ event: 'record-addresses', peer, addresses: multiaddrs.length }, 'merged addresses from a node record')
      } catch (err) {
        log.debug({ event: 'record-addresses-failed', peer, err: (err as Error).message }, 'could not merge a node record\'s addresses')
      }
    }
  }
  const schedule = (): void => {
    if (stopped || timer !== undefined) return
    timer = setTimeout(() => { void pass() }, RECORD_ADDRESSES_DEBOUNCE_MS)
  }
  const unsubscribe = state.onChange(schedule)
  schedule()
  return () => {
    stopped = true
    unsubscribe()
    if (timer !== undefined) clearTimeout(timer)
  }
}
