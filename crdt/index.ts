// Public surface of crdt/ (see README.md beside this file): the replicated swarm document, its
// signed envelopes and acceptance rules, anti-entropy helpers and persistence. Knows nothing of
// libp2p: the network layer (protocols/sync) moves envelopes and runs as bytes.
export { SwarmState, openSwarmState } from './swarm-state.ts'
export { fileEnvelopeStore, memoryEnvelopeStore } from './envelope-store.ts'
export { authorizeUpdate } from './authorize.ts'
export { verifyForkProof } from './fork-proof.ts'
export type { UpdateScope, UpdateCheck } from './authorize.ts'
export { beaconHash, sealBeacon, encodeBeacon, decodeBeacon } from './beacon.ts'
export { envelopeHash, sealEnvelope, runHashes, encodeEnvelope, decodeEnvelope, encodeRun, decodeRun, encodeForkProof, decodeForkProof, GENESIS_HASH } from './envelope.ts'
export { clientIdOf, namespaceOf, writerIdentity } from './writer-identity.ts'
export { keySigner } from './key-signer.ts'
export { CorruptStoreError, InvalidRecordError, MalformedEnvelopeError, WriterQuotaError } from './errors.ts'
export * as crdtConstants from './constants.ts'

/**
 * One update of one writer (wire form: envelope.proto). hash = SHA-256(domain, swarm, writer,
 * seq, prev, update); the writer signs the hash; `prev` chains a writer's envelopes.
 */
export interface Envelope {
  /** Raw Ed25519 public key of the writer. */
  writer: Uint8Array
  seq: number
  prev: Uint8Array
  /** Yjs v1 update. */
  update: Uint8Array
  /** Empty in the store when a later envelope's signature covers this one. */
  signature: Uint8Array
}

/** Consecutive envelopes of one writer, authenticated by one signature over the last hash. */
export interface Run {
  writer: Uint8Array
  fromSeq: number
  prev: Uint8Array
  updates: Uint8Array[]
  signature: Uint8Array
}

/**
 * A writer's signed presence (wire form: beacon.proto): online at `at` (its clock, ms), with its
 * chain at `seq`/`head`. Ephemeral: replicas keep only the latest per writer, never in the log.
 */
export interface Beacon {
  writer: Uint8Array
  at: number
  seq: number
  /** Hash of the writer's envelope `seq` (GENESIS_HASH for seq 0). */
  head: Uint8Array
  signature: Uint8Array
}

/** Two authenticated runs of one writer that disagree about one seq: proof of equivocation. */
export interface ForkProof { a: Run, b: Run }

/** JSON a record may hold (checked: finite numbers, plain objects and arrays, ≤ MAX_RECORD_BYTES). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** Signs envelope hashes with the node's Ed25519 key (a libp2p Ed25519 private key fits). */
export interface EnvelopeSigner {
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  sign (data: Uint8Array): Uint8Array | Promise<Uint8Array>
}

/** Everything derived from a writer's public key. */
export interface WriterIdentity {
  publicKey: Uint8Array
  /** libp2p peer id text of the key. */
  peerId: string
  /** The only Yjs clientID the writer's structs may carry (53 bits of SHA-256 of the key). */
  clientId: number
  /** The only top-level type the writer may write: `ns:<peerId>`. */
  namespace: string
  verify (data: Uint8Array, signature: Uint8Array): boolean
}

/** A contiguous range of one model's layers served by a node: `[start, end)`. */
export interface ServedRange { model: string, start: number, end: number }

/** A node's own description of itself. */
export interface NodeRecord {
  /** Measured capabilities (free-form numbers: memory bytes, per-layer ms, bandwidth, ...). */
  capabilities: { [name: string]: number | string | boolean }
  layers: ServedRange[]
  addresses: string[]
  version: string
}

/** Presence: the timestamp of the writer's latest beacon. */
export interface PresenceRecord { at: number }

/** What one node (the issuer) claims about another's reputation. Global scores are derived. */
export interface ReputationClaim { subject: string, score: number, at: number, round?: string }

/** A consensus round record as written by one participant. */
export interface RoundRecord { id: string, data: JsonValue }

/** A model manifest published by one node. */
export interface ModelManifest { id: string, data: JsonValue }

/** Why an envelope or run was refused. */
export type RejectReason =
  | 'bad-key' | 'bad-signature' | 'oversize' | 'malformed' | 'wrong-chain'
  | 'foreign-client' | 'foreign-namespace' | 'foreign-origin' | 'foreign-delete' | 'clock-gap' | 'forbidden-content'
  | 'equivocation' | 'flagged-writer' | 'client-id-collision' | 'pending-full'
  | 'clock-skew' | 'presence-full' | 'quota' | 'writers-full'

export type ReceiveResult =
  | { status: 'accepted', applied: number }
  | { status: 'duplicate' }
  | { status: 'pending' }
  | { status: 'rejected', reason: RejectReason, detail: string, blame: 'writer' | 'sender', conflictSeq?: number }

/** What SwarmState did with a beacon; `behind`: the writer's chain is ahead of ours. */
export type BeaconResult =
  | { status: 'accepted', behind: boolean }
  | { status: 'stale' }
  | Extract<ReceiveResult, { status: 'rejected' }>

/** Per-writer head, as exchanged by anti-entropy. */
export interface WriterHead { clientId: number, seq: number, hash: Uint8Array }

/** A peer (writer or sender) this node stopped trusting, and why. */
export interface FlaggedPeer {
  peerId: string
  reasons: RejectReason[]
  count: number
  firstAt: number
  /** Proven equivocation (we hold a ForkProof): its namespace is left out of the views. */
  excluded: boolean
}

/** Running totals of what SwarmState did with incoming envelopes. */
export interface StateCounters {
  accepted: number
  duplicates: number
  pending: number
  rejected: number
  byReason: Partial<Record<RejectReason, number>>
  /** Beacons taken, and beacons dropped as not newer than the one held (or expired). */
  beacons: number
  staleBeacons: number
}

/** One change of the document, in terms of the views. */
export interface ChangeEvent {
  writer: string
  kind: 'node' | 'presence' | 'reputation' | 'round' | 'manifest'
  key: string
  local: boolean
}

/** Where envelopes live between runs; `load` returns them in acceptance order. */
export interface EnvelopeStore {
  load (): Promise<Envelope[]>
  /** Fork proofs of the writers this replica excluded. */
  loadForkProofs (): Promise<ForkProof[]>
  append (envelopes: Envelope[]): void
  appendForkProof (proof: ForkProof): void
  /** Writes everything appended so far. */
  flush (): Promise<void>
  /** Sets the damaged logs aside and starts empty ones; returns where the envelope log went. */
  reset (): Promise<string | undefined>
  close (): Promise<void>
}

/** Outcome of loading a store. */
export type LoadReport =
  | { status: 'empty' }
  | { status: 'loaded', envelopes: number, writers: number }
  | { status: 'corrupt', reason: string, movedTo?: string }

/** Options of SwarmState's writes. */
export interface WriteOptions {
  /** Abandons a write still waiting for paused writes to resume. */
  signal?: AbortSignal
}

export interface SwarmStateInit {
  /** Swarm name; hashed into every envelope so envelopes cannot cross swarms. */
  swarm: string
  signer: EnvelopeSigner
  /** Milliseconds since the epoch; injected for tests. Default Date.now. */
  clock?: () => number
  /** Default PRESENCE_TTL_MS. */
  presenceTtlMs?: number
  /** Default: memory only. */
  store?: EnvelopeStore
}
