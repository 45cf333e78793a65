// SwarmReplica: the receiving side of the swarm document. Remote envelopes and anti-entropy
// runs are verified, checked against the acceptance rules (authorize.ts) and the writer's hash
// chain, then applied; rejections are counted and flag the writer or the sender; proven
// equivocators are excluded. SwarmState (swarm-state.ts) adds this node's own writes.
import { createHash } from 'node:crypto'
import * as Y from 'yjs'
import { authorizeUpdate } from './authorize.ts'
import { BEACON_MAX_SKEW_MS, PRESENCE_DIGEST_DOMAIN, MAX_FLAGGED, MAX_PENDING_BYTES, MAX_WRITER_BYTES, MAX_WRITERS } from './constants.ts'
import { beaconHash } from './beacon.ts'
import { equals as equalBytes } from 'uint8arrays/equals'
import { envelopeHash, runHashes } from './envelope.ts'
import { verifyForkProof } from './fork-proof.ts'
import { CorruptStoreError } from './errors.ts'
import { SwarmViews } from './swarm-views.ts'
import { quotaBytes, WriterLog } from './writer-log.ts'
import { writerIdentity } from './writer-identity.ts'
import type {
  Beacon, BeaconResult, ChangeEvent, Envelope, EnvelopeStore, FlaggedPeer, ForkProof, LoadReport, ReceiveResult, RejectReason,
  Run, StateCounters, WriterHead, WriterIdentity
} from './index.ts'

/** Transaction origin of this node's own writes. */
export const LOCAL = Symbol('local')
const REMOTE = Symbol('remote')
/** A clientID no derived id can equal (they are positive), used while applying our own updates. */
const APPLYING_OWN = -1

type Rejected = Extract<ReceiveResult, { status: 'rejected' }>
const rejected = (reason: RejectReason, detail: string, blame: 'writer' | 'sender'): Rejected => ({ status: 'rejected', reason, detail, blame })
/** Refusals that are nobody's fault in particular (our state, our clock, our limits): no flag. */
const BLAMELESS = new Set<RejectReason>(['flagged-writer', 'pending-full', 'clock-skew', 'presence-full', 'writers-full'])

export class SwarmReplica extends SwarmViews {
  readonly swarm: string
  readonly identity: WriterIdentity
  readonly counters: StateCounters = { accepted: 0, duplicates: 0, pending: 0, rejected: 0, byReason: {}, beacons: 0, staleBeacons: 0 }
  readonly flagged = new Map<string, FlaggedPeer>()
  loadReport: LoadReport = { status: 'empty' }
  protected store: EnvelopeStore | undefined
  private readonly logs = new Map<string, WriterLog>()
  private readonly byClientId = new Map<number, WriterLog>()
  private readonly byKey = new Map<string, WriterLog>()
  private readonly forkProofs = new Map<string, { clientId: number, proof: ForkProof }>()

  constructor (swarm: string, identity: WriterIdentity, now: () => number, presenceTtlMs: number, store: EnvelopeStore | undefined) {
    super(new Y.Doc(), identity.peerId, now, presenceTtlMs)
    this.swarm = swarm
    this.identity = identity
    this.store = store
    this.doc.clientID = identity.clientId
    this.doc.on('afterTransaction', (tr: Y.Transaction) => this.emitChanges(tr, tr.origin === LOCAL))
  }

  // --- remote envelopes ---

  /** Verifies, checks and applies one envelope (gossip). `from` is the peer that handed it over. */
  receive (envelope: Envelope, from?: string): ReceiveResult {
    const result = this.receiveEnvelope(envelope)
    return this.account(result, envelope.writer, from)
  }

  private receiveEnvelope (envelope: Envelope): ReceiveResult {
    const identity = this.identityOf(envelope.writer)
    if (identity === undefined) return rejected('bad-key', 'writer is not an Ed25519 key', 'sender')
    if (this.isExcluded(identity.peerId)) return rejected('flagged-writer', 'writer is flagged', 'sender')
    const hash = envelopeHash(this.swarm, envelope.writer, envelope.seq, envelope.prev, envelope.update)
    // Verify before keeping anything about the writer: junk must not allocate state.
    if (!identity.verify(hash, envelope.signature)) return rejected('bad-signature', `seq ${envelope.seq}`, 'sender')
    const log = this.logFor(identity)
    if (!(log instanceof WriterLog)) return log
    if (envelope.seq < 1) return rejected('malformed', 'seq 0', 'writer')
    if (envelope.seq > log.seq + 1) {
      // Held ahead of a gap, so only the clock is unknown: check the rest now, before a
      // validator accepts (and gossip forwards) it.
      const check = authorizeUpdate(envelope.update, { clientId: identity.clientId, namespace: identity.namespace, clock: undefined })
      if (!check.ok) return rejected(check.reason, check.detail, 'writer')
      // Earlier envelopes only add to the writer's bytes: over the quota now, over it for sure.
      if (log.envelopeBytes + quotaBytes(envelope.update) > MAX_WRITER_BYTES) return overQuota(log, envelope.seq)
      if (this.pendingBytes() + envelope.update.length > MAX_PENDING_BYTES || !log.hold(envelope, hash)) {
        return rejected('pending-full', `seq ${envelope.seq} too far ahead of ${log.seq}`, 'sender')
      }
      this.counters.pending++
      return { status: 'pending' }
    }
    const result = this.extend(log, envelope.seq, envelope.prev, envelope.update, hash, envelope.signature)
    if (result.status !== 'accepted') return this.withProof(log, result, singleRun(envelope))
    return { status: 'accepted', applied: 1 + this.drain(log) }
  }

  /** Applies buffered envelopes that now extend the chain; returns how many. */
  private drain (log: WriterLog): number {
    let applied = 0
    for (let next = log.takeNext(); next !== undefined; next = log.takeNext()) {
      const result = this.extend(log, next.envelope.seq, next.envelope.prev, next.envelope.update, next.hash, next.envelope.signature)
      if (result.status !== 'accepted') {
        this.account(this.withProof(log, result, singleRun(next.envelope)), next.envelope.writer, undefined)
        break
      }
      applied++
    }
    return applied
  }

  /** Verifies a run (one signature over a hash chain) and applies the envelopes it adds. */
  receiveRun (run: Run, from?: string): ReceiveResult {
    return this.account(this.receiveRunInner(run), run.writer, from)
  }

  private receiveRunInner (run: Run): ReceiveResult {
    const identity = this.identityOf(run.writer)
    if (identity === undefined) return rejected('bad-key', 'writer is not an Ed25519 key', 'sender')
    if (this.isExcluded(identity.peerId)) return rejected('flagged-writer', 'writer is flagged', 'sender')
    if (run.updates.length === 0 || run.fromSeq < 1) return rejected('malformed', 'empty run', 'sender')
    const hashes = runHashes(this.swarm, run)
    if (!identity.verify(hashes[hashes.length - 1], run.signature)) return rejected('bad-signature', `run from ${run.fromSeq}`, 'sender')
    const log = this.logFor(identity)
    if (!(log instanceof WriterLog)) return log
    if (run.fromSeq > log.seq + 1) return rejected('wrong-chain', `run starts at ${run.fromSeq}, have ${log.seq}`, 'sender')
    let applied = 0
    for (let i = 0; i < run.updates.length; i++) {
      const seq = run.fromSeq + i
      const prev = i === 0 ? run.prev : hashes[i - 1]
      const last = i === run.updates.length - 1
      const result = this.extend(log, seq, prev, run.updates[i], hashes[i], last ? run.signature : undefined)
      if (result.status === 'accepted') applied++
      else if (result.status === 'rejected') return this.withProof(log, result, run)
    }
    if (applied === 0) return { status: 'duplicate' }
    return { status: 'accepted', applied: applied + this.drain(log) }
  }

  /** Adds one authenticated envelope at `seq ≤ head + 1` to the writer's chain. */
  private extend (log: WriterLog, seq: number, prev: Uint8Array, update: Uint8Array, hash: Uint8Array, signature: Uint8Array | undefined): ReceiveResult {
    if (seq <= log.seq) {
      if (equalBytes(log.hashAt(seq) as Uint8Array, hash)) {
        if (signature !== undefined) log.setSignature(seq, signature)
        return { status: 'duplicate' }
      }
      return { ...rejected('equivocation', `two envelopes with seq ${seq}`, 'writer'), conflictSeq: seq }
    }
    if (!equalBytes(prev, log.headHash)) {
      if (seq === 1) return rejected('malformed', 'seq 1 must follow the genesis hash', 'writer')
      return { ...rejected('equivocation', `seq ${seq} follows a different envelope ${seq - 1}`, 'writer'), conflictSeq: seq - 1 }
    }
    if (log.envelopeBytes + quotaBytes(update) > MAX_WRITER_BYTES) return overQuota(log, seq)
    const check = authorizeUpdate(update, { clientId: log.identity.clientId, namespace: log.identity.namespace, clock: log.clock })
    if (!check.ok) return rejected(check.reason, check.detail, 'writer')
    const own = log === this.logs.get(this.identity.peerId)
    // Yjs renames a document's clientID when a remote update advances it; ours comes back from
    // disk or from peers after a rebuild, so step aside while applying it.
    if (own) this.doc.clientID = APPLYING_OWN
    try {
      Y.applyUpdate(this.doc, update, REMOTE)
    } finally {
      if (own) this.doc.clientID = this.identity.clientId
    }
    log.append(update, hash, check.clockAfter, signature)
    this.store?.append([log.storedAt(seq)])
    return { status: 'accepted', applied: 1 }
  }

  // --- presence beacons (never in the log or the document) ---

  /**
   * Takes a writer's signed beacon (gossip, or relayed by anti-entropy) when it is newer than
   * the one held. Stale (not newer, or already expired) beacons are dropped unverified; one from
   * further in the future than BEACON_MAX_SKEW_MS, or from an excluded writer, is refused.
   * `behind` says the writer's chain is ahead of what we hold (worth a pull), unless we flagged
   * the writer (its chain stops here on purpose, e.g. at its quota).
   */
  receiveBeacon (beacon: Beacon, from?: string): BeaconResult {
    const result = this.receiveBeaconInner(beacon)
    if (result.status === 'accepted') this.counters.beacons++
    else if (result.status === 'stale') this.counters.staleBeacons++
    else this.account(result, beacon.writer, from)
    return result
  }

  private receiveBeaconInner (beacon: Beacon): BeaconResult {
    const identity = this.identityOf(beacon.writer)
    if (identity === undefined) return rejected('bad-key', 'writer is not an Ed25519 key', 'sender')
    if (this.isExcluded(identity.peerId)) return rejected('flagged-writer', 'writer is flagged', 'sender')
    const now = this.now()
    if (beacon.at > now + BEACON_MAX_SKEW_MS) return rejected('clock-skew', `beacon ${beacon.at - now} ms ahead of our clock`, 'writer')
    const held = this.beacons.get(identity.peerId)
    if ((held !== undefined && beacon.at <= held.beacon.at) || now - beacon.at >= this.presenceTtlMs) return { status: 'stale' }
    if (!identity.verify(beaconHash(this.swarm, beacon.writer, beacon.at, beacon.seq, beacon.head), beacon.signature)) {
      return rejected('bad-signature', `beacon at ${beacon.at}`, 'sender')
    }
    const hasChain = (peerId: string): boolean => (this.logs.get(peerId)?.seq ?? 0) > 0
    if (!this.beacons.offer(identity.peerId, beacon, Math.min(beacon.at, now), now, hasChain)) {
      return rejected('presence-full', `${this.beacons.size} writers present`, 'sender')
    }
    this.emitChange({ writer: identity.peerId, kind: 'presence', key: 'presence', local: identity.peerId === this.identity.peerId })
    // A flagged writer's chain is stuck here on purpose (it signed something we refuse): no pull.
    const behind = beacon.seq > (this.logs.get(identity.peerId)?.seq ?? 0) && !this.flagged.has(identity.peerId)
    return { status: 'accepted', behind }
  }

  /** The live beacons this replica holds (excluded writers left out), sorted by writer. */
  liveBeacons (now = this.now()): Beacon[] {
    return this.beacons.sorted().filter(([peerId, entry]) => !this.isExcluded(peerId) && this.beacons.live(entry, now)).map(([, entry]) => entry.beacon)
  }

  /**
   * SHA-256 over (writer, at) of every live beacon, sorted: two replicas that hold the same latest
   * beacons have the same digest, so anti-entropy can skip handing them over.
   */
  presenceDigest (now = this.now()): Uint8Array {
    const hash = createHash('sha256').update(PRESENCE_DIGEST_DOMAIN)
    const at = Buffer.alloc(8)
    for (const beacon of this.liveBeacons(now)) {
      at.writeBigUInt64BE(BigInt(beacon.at))
      hash.update(beacon.writer).update(at)
    }
    return hash.digest()
  }

  /** Drops expired beacons (called on a clock tick; a full table also prunes itself). */
  prunePresence (now = this.now()): void {
    this.beacons.prune(now)
  }

  /** Counts the outcome and flags the writer or the sender; returns the result unchanged. */
  private account (result: ReceiveResult, writerKey: Uint8Array, from: string | undefined): ReceiveResult {
    if (result.status === 'accepted') this.counters.accepted += result.applied
    else if (result.status === 'duplicate') this.counters.duplicates++
    else if (result.status === 'rejected') {
      this.counters.rejected++
      this.counters.byReason[result.reason] = (this.counters.byReason[result.reason] ?? 0) + 1
      const blamed = result.blame === 'writer' ? this.identityOf(writerKey)?.peerId : from
      if (blamed !== undefined && !BLAMELESS.has(result.reason)) this.flag(blamed, result.reason)
    }
    return result
  }

  private flag (peerId: string, reason: RejectReason): void {
    if (!this.flagged.has(peerId) && this.flagged.size >= MAX_FLAGGED) {
      // Bounded: forget the oldest flag that is not an exclusion (exclusions hold proofs).
      for (const [id, old] of this.flagged) if (!old.excluded) { this.flagged.delete(id); break }
    }
    const entry: FlaggedPeer = this.flagged.get(peerId) ?? { peerId, reasons: [], count: 0, firstAt: this.now(), excluded: false }
    if (!entry.reasons.includes(reason)) entry.reasons.push(reason)
    entry.count++
    this.flagged.set(peerId, entry)
  }

  /**
   * Excludes a writer proven to have equivocated: its namespace may differ between replicas that
   * saw different branches, so the views leave it out and its envelopes are refused. Only a
   * proof excludes (it travels to other replicas); a writer that merely signed an invalid update
   * is flagged, and its chain stays stuck before that update on every replica.
   */
  private exclude (identity: WriterIdentity, proof: ForkProof): void {
    this.flag(identity.peerId, 'equivocation')
    const entry = this.flagged.get(identity.peerId) as FlaggedPeer
    if (entry.excluded) return
    entry.excluded = true
    this.forkProofs.set(identity.peerId, { clientId: identity.clientId, proof })
    this.store?.appendForkProof(proof)
    this.excludeWriter(identity.peerId)
  }

  /** Attaches a fork proof to an equivocation: the incoming run against our own branch. */
  private withProof (log: WriterLog, result: ReceiveResult, incoming: Run): ReceiveResult {
    if (result.status !== 'rejected' || result.reason !== 'equivocation' || result.conflictSeq === undefined) return result
    const ours = log.runsFrom(Math.max(1, result.conflictSeq), 1)[0]
    const proof = ours === undefined ? undefined : { a: incoming, b: ours }
    if (proof !== undefined && verifyForkProof(this.swarm, proof) !== undefined) this.exclude(log.identity, proof)
    return result
  }

  /** Checks a fork proof from a peer; true when it newly excludes a writer. */
  receiveForkProof (proof: ForkProof, from?: string): boolean {
    const identity = verifyForkProof(this.swarm, proof)
    if (identity === undefined) {
      this.account(rejected('malformed', 'fork proof does not hold', 'sender'), proof.a.writer, from)
      return false
    }
    if (this.isExcluded(identity.peerId)) return false
    // Keys are free and a fork of a fresh key costs two signatures: beyond MAX_WRITERS proofs,
    // only writers we hold a chain of are excluded (the others' envelopes meet writers-full).
    if (this.forkProofs.size >= MAX_WRITERS && (this.logs.get(identity.peerId)?.seq ?? 0) === 0) return false
    this.exclude(identity, proof)
    return true
  }

  /** Fork proofs of excluded writers, except those whose clientID is listed (the peer has them). */
  forkProofsExcept (clientIds: Iterable<number>): ForkProof[] {
    const known = new Set(clientIds)
    return [...this.forkProofs.values()].filter((p) => !known.has(p.clientId)).map((p) => p.proof)
  }

  /** clientIDs of the writers this replica excludes. */
  excludedClientIds (): number[] {
    return [...this.forkProofs.values()].map((p) => p.clientId).sort((a, b) => a - b)
  }

  /** The writer's identity, from its log when known (saves re-deriving the key). */
  private identityOf (writerKey: Uint8Array): WriterIdentity | undefined {
    const known = this.byKey.get(Buffer.from(writerKey).toString('hex'))
    return known?.identity ?? writerIdentity(writerKey)
  }

  private logFor (identity: WriterIdentity): WriterLog | Rejected {
    let log = this.logs.get(identity.peerId)
    if (log !== undefined) return log
    if (this.byClientId.has(identity.clientId)) return rejected('client-id-collision', `clientID ${identity.clientId} is taken`, 'writer')
    if (this.logs.size >= MAX_WRITERS && !this.evictChainless()) return rejected('writers-full', `${this.logs.size} writers held`, 'sender')
    log = new WriterLog(identity)
    this.logs.set(identity.peerId, log)
    this.byClientId.set(identity.clientId, log)
    this.byKey.set(Buffer.from(identity.publicKey).toString('hex'), log)
    return log
  }

  /** Drops one writer that has no accepted envelope (only pending ones, if any); false if none. */
  private evictChainless (): boolean {
    for (const [peerId, log] of this.logs) {
      if (log.seq > 0 || peerId === this.identity.peerId) continue
      this.logs.delete(peerId)
      this.byClientId.delete(log.identity.clientId)
      this.byKey.delete(Buffer.from(log.identity.publicKey).toString('hex'))
      return true
    }
    return false
  }

  protected ownLog (): WriterLog {
    return this.logFor(this.identity) as WriterLog
  }

  // --- anti-entropy ---

  /** Our head per writer, sorted by clientID. */
  heads (): WriterHead[] {
    return [...this.logs.values()].filter((l) => l.seq > 0)
      .map((l) => ({ clientId: l.identity.clientId, seq: l.seq, hash: l.headHash }))
      .sort((a, b) => a.clientId - b.clientId)
  }

  /**
   * Runs the peer lacks given its heads, at most `maxBytes` of updates. Where its head hash at
   * some seq differs from ours, the runs start at that seq so the peer sees the conflict.
   */
  runsFor (theirHeads: WriterHead[], maxBytes: number): { runs: Run[], more: boolean } {
    const theirs = new Map(theirHeads.map((h) => [h.clientId, h]))
    const runs: Run[] = []
    let budget = maxBytes
    let more = false
    for (const log of [...this.logs.values()].sort((a, b) => a.identity.clientId - b.identity.clientId)) {
      const head = theirs.get(log.identity.clientId)
      let from = (head?.seq ?? 0) + 1
      const ours = head === undefined ? undefined : log.hashAt(head.seq)
      if (head !== undefined && ours !== undefined && !prefixEqual(ours, head.hash)) from = head.seq
      if (from > log.seq) continue
      if (budget <= 0) { more = true; break }
      for (const run of log.runsFrom(from, budget)) {
        runs.push(run)
        budget -= run.updates.reduce((n, u) => n + u.length, 0)
      }
      if (runs.length > 0 && runs[runs.length - 1].fromSeq + runs[runs.length - 1].updates.length - 1 < log.seq) more = true
    }
    return { runs, more }
  }

  /** Update bytes held ahead of gaps, all writers together. */
  pendingBytes (): number {
    let n = 0
    for (const log of this.logs.values()) n += log.pendingBytes
    return n
  }

  /** Bytes of all accepted updates (differences between two moments give an envelope delta). */
  updateBytes (): number {
    let n = 0
    for (const log of this.logs.values()) n += log.bytes
    return n
  }

  /** Writer peer ids known to this replica (flagged ones included), sorted. */
  writers (): string[] {
    return [...this.logs.values()].filter((l) => l.seq > 0).map((l) => l.identity.peerId).sort()
  }

  // --- persistence ---

  /** Replays stored envelopes; any failure means the store is corrupt (the caller starts over). */
  replay (envelopes: Envelope[]): void {
    // Per writer, consecutive envelopes up to each signed one form a run (one signature check).
    const runs = new Map<string, Run[]>()
    const open = new Map<string, Run>()
    for (const e of envelopes) {
      const key = Buffer.from(e.writer).toString('hex')
      let run = open.get(key)
      if (run === undefined || run.fromSeq + run.updates.length !== e.seq) {
        if (run !== undefined) throw new CorruptStoreError(`stored envelopes of a writer jump to seq ${e.seq}`)
        run = { writer: e.writer, fromSeq: e.seq, prev: e.prev, updates: [], signature: new Uint8Array(0) }
        open.set(key, run)
      }
      run.updates.push(e.update)
      if (e.signature.length > 0) {
        run.signature = e.signature
        runs.set(key, [...(runs.get(key) ?? []), run])
        open.delete(key)
      }
    }
    if (open.size > 0) throw new CorruptStoreError('stored envelopes end without a signature')
    for (const writerRuns of runs.values()) {
      for (const run of writerRuns) {
        const result = this.receiveRunInner(run)
        if (result.status !== 'accepted') throw new CorruptStoreError(`stored run from seq ${run.fromSeq}: ${result.status === 'rejected' ? result.detail : result.status}`)
      }
    }
  }

  /** Starts appending accepted envelopes to `store` (after a replay from it). */
  attachStore (store: EnvelopeStore): void {
    this.store = store
  }

  private emitChanges (tr: Y.Transaction, local: boolean): void {
    for (const [type, keys] of tr.changed) {
      if (type._item !== null) continue
      const writer = this.writerOfType(type as Y.AbstractType<unknown>)
      if (writer === undefined) continue
      for (const key of keys) if (key !== null) this.emitChange(changeOf(writer, key, local))
    }
  }
}

function overQuota (log: WriterLog, seq: number): Rejected {
  return rejected('quota', `seq ${seq} would take the writer past ${MAX_WRITER_BYTES} envelope bytes (holds ${log.envelopeBytes})`, 'writer')
}

function singleRun (e: Envelope): Run {
  return { writer: e.writer, fromSeq: e.seq, prev: e.prev, updates: [e.update], signature: e.signature }
}

function changeOf (writer: string, key: string, local: boolean): ChangeEvent {
  const kind = key === 'node' ? 'node' : key === 'presence' ? 'presence' : key.startsWith('rep/') ? 'reputation' : key.startsWith('round/') ? 'round' : 'manifest'
  return { writer, kind, key, local }
}

function prefixEqual (full: Uint8Array, prefix: Uint8Array): boolean {
  return prefix.length <= full.length && equalBytes(full.subarray(0, prefix.length), prefix)
}
