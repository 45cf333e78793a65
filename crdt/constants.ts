// Defaults of crdt/ (durations in milliseconds, sizes in bytes).

/** A presence heartbeat older than this (by the reader's clock) no longer counts as online. */
export const PRESENCE_TTL_MS = 30_000
/**
 * A beacon timestamped further ahead of the reader's clock than this is refused: one accepted
 * from far in the future would shadow the writer's real beacons (only later ones replace it).
 * One heartbeat period: NTP-synced clocks are well within it.
 */
export const BEACON_MAX_SKEW_MS = 10_000
/**
 * Presence beacons held at once (one per writer). Keys are free, so beacons of writers with no
 * envelope chain may be evicted for those of writers that have one; when every entry belongs to
 * a writer with a chain, new writers are refused (`presence-full`). 4,096 × ≈300 bytes ≈ 1.2 MB,
 * and 4,096 encoded beacons (≈150 bytes each, ≈600 KiB) fit in one sync reply beside its runs.
 */
export const MAX_PRESENCE_WRITERS = 4096
/** Largest encoded beacon (key, timestamp, seq, head hash, signature, field tags). */
export const MAX_BEACON_BYTES = 256
/** Domain separation tag hashed in front of every beacon. */
export const BEACON_DOMAIN = 'mycelium/beacon/1'
/** Domain separation tag of the digest of a replica's live beacons (anti-entropy). */
export const PRESENCE_DIGEST_DOMAIN = 'mycelium/presence-digest/1'
/** Largest Yjs update one envelope may carry. A node's own records are small JSON values. */
export const MAX_UPDATE_BYTES = 64 * 1024
/** Largest encoded envelope (update plus key, hashes, signature and framing). */
export const MAX_ENVELOPE_BYTES = MAX_UPDATE_BYTES + 512
/**
 * Storage quota of one writer: the bytes its accepted envelopes take (update plus
 * ENVELOPE_OVERHEAD_BYTES each). Deterministic — a function of the chain alone — so every honest
 * replica refuses the same envelope (`quota`) and the writer's chain stops at the same seq
 * everywhere. ≈30,000 small records; a node's own writes stop one largest update short of it.
 */
export const MAX_WRITER_BYTES = 8 * 1024 * 1024
/**
 * What one stored envelope costs beyond its update, for the quota: key (34), seq (≤ 6),
 * prev (34), update tag and length (≤ 4), signature (66) and the store's framing (8). An upper
 * bound of the real record (a heartbeat-sized envelope measured 191 bytes for a 45-byte update).
 */
export const ENVELOPE_OVERHEAD_BYTES = 152
/**
 * Writers with an accepted chain held at once. Keys are free, so without a cap a Sybil could
 * make the store grow by MAX_WRITER_BYTES per key; with it the worst case is
 * 1,024 × 8 MiB = 8 GiB (disk and memory) instead of unbounded, reachable only by pushing that
 * much signed data through every neighbour's rate limit. 1,024 is 10× the 100-node swarms we
 * measure, and an anti-entropy request listing 1,024 heads is ≈20 KiB. Writers with no accepted
 * envelope yet (only pending ones) are evicted first; beyond that new writers are refused
 * (`writers-full`). Unlike the quota this depends on arrival order, so it is a safety valve for
 * an attack, not a rule honest swarms meet.
 */
export const MAX_WRITERS = 1024
/** Peers remembered in `flagged` (oldest non-excluded dropped first). */
export const MAX_FLAGGED = 10_000
/** Envelopes of one writer held while an earlier sequence number is missing. */
export const MAX_PENDING_PER_WRITER = 256
/** Update bytes held ahead of gaps across all writers (many keys must not exhaust memory). */
export const MAX_PENDING_BYTES = 8 * 1024 * 1024
/** Largest number of envelopes one anti-entropy run may carry. */
export const MAX_RUN_ENVELOPES = 4096
/** Largest JSON value a record may hold (node record, claim, round record, manifest). */
export const MAX_RECORD_BYTES = 16 * 1024
/** Prefix of every writer's namespace: the top-level Y.Map `ns:<peerId>`. */
export const NAMESPACE_PREFIX = 'ns:'
/** Domain separation tag hashed in front of every envelope. */
export const ENVELOPE_DOMAIN = 'mycelium/envelope/1'
/** Domain separation tag for deriving a Yjs clientID from a public key. */
export const CLIENT_ID_DOMAIN = 'mycelium/client-id/1'
/** Length of an Ed25519 public key and of a signature. */
export const ED25519_PUBLIC_KEY_BYTES = 32
export const ED25519_SIGNATURE_BYTES = 64
/** Length of an envelope hash (SHA-256). */
export const HASH_BYTES = 32
/** File names of the envelope log and of the fork-proof log inside the state directory. */
export const STORE_FILE = 'envelopes.log'
export const FORKS_FILE = 'forks.log'
/** Largest record the store will read back (guards a corrupted length field). */
export const MAX_STORE_RECORD_BYTES = MAX_ENVELOPE_BYTES * 2
