// The ledger service (issue 7): every daemon derives reputation from the consensus records in its
// swarm-state replica (`round/…` keys, consensus/records.ts) with consensus/ledger.ts, again on
// every change of a round record (debounced). Same records → same reputation bytes on every node.
//
// Genesis (who is admitted without calibration) must be the same set on every node: it is the
// peer ids named in `--bootstrap` (the swarm's anchors); a node started without `--bootstrap`
// is the founding anchor and names itself. With one anchor every node agrees; swarms with several
// anchors must give every node the same bootstrap list (documented in node/README.md).
import { genesisFromBootstrap } from '../client/consensus.ts'
import { admittedFor, deriveLedger, parseRecord, rawWeight, betaScore, type Ledger, type ReputationState, type StoredRecord } from '../consensus/index.ts'

/** The reads the ledger needs from a swarm-state replica (crdt's SwarmState has them). */
export interface RoundsReader {
  rounds: () => Array<{ id: string, data: unknown, writer: string }>
  onChange: (listener: (event: { kind: string }) => void) => () => void
}

/** One spot-check record: `id` is `<session>.<start>-<end>`, `writer` the verifier. */
export interface Evidence { id: string, writer: string, subject: string, start: number, end: number, passed: boolean, checked: number, mismatched: number }

/** Debounce between a round-record change and the re-derivation (ms). */
export const LEDGER_DEBOUNCE_MS = 150

export interface LedgerService {
  readonly genesis: readonly string[]
  /** The latest derived ledger. */
  current: () => Ledger
  state: () => ReputationState
  /** Excluded by a confirmed spot-check: not routed, not judging. */
  excluded: (peer: string) => boolean
  /**
   * Refused for `model`: not admitted for it, and a non-excluded verifier admitted for it wrote a
   * failed calibration of it on that model (it answered its known-answer pairs or its stage
   * challenge wrongly). Without `model`: refused on some model and admitted for none (what a
   * one-model swarm calls refused; a node refused on A but admitted for B, the model it now serves,
   * is not). The API's rounds and requests do not route it (node/consensus-judge.ts); a later
   * passed calibration on the model admits it.
   */
  refused: (peer: string, model?: string) => boolean
  /**
   * Per node: admitted, refused, excluded, evidence, Beta score and vote weight (for `status` /
   * `swarm`); `models`, the models it passed calibration on, when admitted by calibration (absent
   * for a founder: every model).
   */
  summary: () => Record<string, { admitted: boolean, refused: boolean, excluded: boolean, positive: number, negative: number, score: number, weight: number, models?: string[] }>
  /** The spot-check evidence records in the replica, sorted by id then writer (`{"cmd":"evidence"}`). */
  evidence: () => Evidence[]
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
  let refused: ReadonlyMap<string, ReadonlySet<string>> = new Map()
  const derive = (): Ledger => {
    const records: StoredRecord[] = state.rounds().map((r) => ({ id: r.id, data: r.data, writer: r.writer }))
    const derived = deriveLedger(records, { genesis })
    refused = refusedBy(records, derived.state)
    return derived
  }
  let ledger = derive()
  const isRefused = (peer: string, model?: string): boolean => {
    const models = refused.get(peer)
    if (models === undefined) return false
    return model !== undefined ? models.has(model) : ledger.state.nodes.get(peer)?.admitted !== true
  }
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
    refused: (peer, model) => isRefused(peer, model),
    evidence: () => evidenceOf(state.rounds()),
    summary: () => {
      const out: ReturnType<LedgerService['summary']> = {}
      const ids = new Set([...ledger.state.nodes.keys(), ...refused.keys()])
      for (const id of [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
        const rep = ledger.state.nodes.get(id) ?? { admitted: false, excluded: false, positive: 0, negative: 0 }
        out[id] = { admitted: rep.admitted, refused: isRefused(id), excluded: rep.excluded, positive: round3(rep.positive), negative: round3(rep.negative), score: round3(betaScore(rep)), weight: round3(rawWeight(rep)), ...(rep.models !== undefined ? { models: [...rep.models] } : {}) }
      }
      return out
    },
    refresh,
    onUpdate: (listener) => { listeners.add(listener); return () => { listeners.delete(listener) } },
    stop: () => { off(); if (timer !== undefined) clearTimeout(timer); timer = undefined }
  }
}

/** The records that parse, with their stored form (the others are ignored, as the ledger does). */
function * parsed<R extends { id: string, data: unknown }> (records: readonly R[]): Generator<{ r: R, rec: ReturnType<typeof parseRecord> }> {
  for (const r of records) {
    let rec
    try {
      rec = parseRecord(r.id, r.data)
    } catch {
      continue // reason: a record that does not parse is ignored, as the ledger does
    }
    yield { r, rec }
  }
}

/** The spot-check records among `rounds` (records that do not parse are skipped, as the ledger does). */
export function evidenceOf (rounds: ReadonlyArray<{ id: string, data: unknown, writer: string }>): Evidence[] {
  const out: Evidence[] = []
  for (const { r, rec } of parsed(rounds)) {
    if (rec.t === 'spot-check') out.push({ id: rec.id, writer: r.writer, subject: rec.subject, start: rec.start, end: rec.end, passed: rec.passed, checked: rec.checked.length, mismatched: rec.mismatched.length })
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.writer < b.writer ? -1 : a.writer > b.writer ? 1 : 0))
}

/**
 * Per subject, the models it failed calibration on — by a non-excluded verifier admitted for that
 * model — and is still not admitted for.
 */
export function refusedBy (records: readonly StoredRecord[], state: ReputationState): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const { r, rec } of parsed(records)) {
    if (rec.t !== 'calibration' || rec.passed || r.writer === rec.subject) continue
    const verifier = state.nodes.get(r.writer)
    if (!admittedFor(verifier, rec.model) || verifier?.excluded === true) continue
    if (admittedFor(state.nodes.get(rec.subject), rec.model)) continue
    const models = out.get(rec.subject) ?? new Set<string>()
    models.add(rec.model)
    out.set(rec.subject, models)
  }
  return out
}

function round3 (x: number): number {
  return Math.round(x * 1000) / 1000
}
