// The ledger service (issue 7): every daemon derives reputation from the consensus records in its
// swarm-state replica (`round/…` keys, consensus/records.ts) with consensus/ledger.ts, again on
// every change of a round record (debounced). Same records → same reputation bytes on every node.
//
// Genesis (who is admitted without calibration) must be the same set on every node: it is the
// peer ids named in `--bootstrap` (the swarm's anchors); a node started without `--bootstrap`
// is the founding anchor and names itself. With one anchor every node agrees; swarms with several
// anchors must give every node the same bootstrap list (documented in node/README.md).
import { genesisFromBootstrap } from '../client/consensus.ts'
import { deriveLedger, rawWeight, betaScore, type Ledger, type ReputationState, type StoredRecord } from '../consensus/index.ts'

/** The reads the ledger needs from a swarm-state replica (crdt's SwarmState has them). */
export interface RoundsReader {
  rounds: () => Array<{ id: string, data: unknown, writer: string }>
  onChange: (listener: (event: { kind: string }) => void) => () => void
}

/** Debounce between a round-record change and the re-derivation (ms). */
export const LEDGER_DEBOUNCE_MS = 150

export interface LedgerService {
  readonly genesis: readonly string[]
  /** The latest derived ledger. */
  current: () => Ledger
  state: () => ReputationState
  /** Excluded by a confirmed spot-check: not routed, not judging. */
  excluded: (peer: string) => boolean
  /** Per node: admitted, excluded, evidence, Beta score and vote weight (for `status` / `swarm`). */
  summary: () => Record<string, { admitted: boolean, excluded: boolean, positive: number, negative: number, score: number, weight: number }>
  /** Re-derive now (tests and the round owner, before scheduling). */
  refresh: () => Ledger
  /** Listens for re-derivations. */
  onUpdate: (listener: (ledger: Ledger) => void) => () => void
  stop: () => void
}

/** Genesis peer ids from the bootstrap multiaddrs (their /p2p/<id>); the founding anchor (none) names itself. */
export const genesisOf = genesisFromBootstrap

export function startLedger (state: RoundsReader, genesis: readonly string[], options: { debounceMs?: number } = {}): LedgerService {
  const listeners = new Set<(ledger: Ledger) => void>()
  const derive = (): Ledger => {
    const records: StoredRecord[] = state.rounds().map((r) => ({ id: r.id, data: r.data, writer: r.writer }))
    return deriveLedger(records, { genesis })
  }
  let ledger = derive()
  let timer: NodeJS.Timeout | undefined
  const refresh = (): Ledger => {
    ledger = derive()
    for (const l of listeners) l(ledger)
    return ledger
  }
  const off = state.onChange((event) => {
    if (event.kind !== 'round' || timer !== undefined) return
    timer = setTimeout(() => { timer = undefined; refresh() }, options.debounceMs ?? LEDGER_DEBOUNCE_MS)
  })
  return {
    genesis: [...genesis],
    current: () => ledger,
    state: () => ledger.state,
    excluded: (peer) => ledger.state.nodes.get(peer)?.excluded === true,
    summary: () => {
      const out: ReturnType<LedgerService['summary']> = {}
      for (const [id, rep] of [...ledger.state.nodes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        out[id] = { admitted: rep.admitted, excluded: rep.excluded, positive: round3(rep.positive), negative: round3(rep.negative), score: round3(betaScore(rep)), weight: round3(rawWeight(rep)) }
      }
      return out
    },
    refresh,
    onUpdate: (listener) => { listeners.add(listener); return () => { listeners.delete(listener) } },
    stop: () => { off(); if (timer !== undefined) clearTimeout(timer); timer = undefined }
  }
}

function round3 (x: number): number {
  return Math.round(x * 1000) / 1000
}
