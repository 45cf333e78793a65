// What the daemon tells `status`/`doctor` (and the `swarm` control command) about the replicated
// swarm document: sizes and rejection counters for a summary, the sorted views for a full dump.
import type { JsonValue } from '../crdt/index.ts'
import type { MyceliumHost } from './host.ts'
import type { LoadBeacon } from './load-beacon.ts'

/** Counts and health of the local replica (JSON-ready). */
export function swarmSummary (host: MyceliumHost): Record<string, unknown> {
  const sync = host.services.swarmSync
  const state = sync.state
  return {
    writers: state.writers().length,
    nodes: state.nodes().size,
    online: state.online().length,
    store: state.loadReport,
    counters: state.counters,
    flagged: [...state.flagged.values()].map((f) => ({ peerId: f.peerId, reasons: f.reasons, count: f.count, excluded: f.excluded })),
    sync: sync.stats
  }
}

/** The replica's views: node records, who is online, measured links to peers, live loads (when given). */
export function swarmView (host: MyceliumHost, loads?: Pick<LoadBeacon, 'table' | 'own'>): Record<string, unknown> {
  const state = host.services.swarmSync.state
  const links = [...host.services.probe.results()].map(([peer, r]) => ({ peer, ...r }))
  return {
    self: host.peerId.toString(),
    nodes: Object.fromEntries(state.nodes()) as unknown as JsonValue,
    online: state.online(),
    manifests: state.manifests().length,
    // which models the swarm knows (status draws layer coverage per model from these)
    models: [...new Map(state.manifests().map((m) => [m.id, { id: m.id, nLayers: (m.data as { nLayers?: number }).nLayers ?? null, architecture: (m.data as { architecture?: string }).architecture ?? null }])).values()],
    links,
    ...(loads !== undefined
      ? { loads: Object.fromEntries([...state.nodes().keys()].flatMap((peer) => {
          const l = peer === host.peerId.toString() ? loads.own() : loads.table.get(peer)
          return l === undefined ? [] : [[peer, l]]
        })) as unknown as JsonValue }
      : {})
  }
}
