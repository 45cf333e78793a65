// Defaults of the swarm-state replication service (durations in milliseconds, sizes in bytes).

/** Anti-entropy protocol id. The swarm name travels inside every request. */
export const SYNC_PROTOCOL = '/mycelium/sync/1'
/** Gossipsub topic of a swarm's state: `/mycelium/<swarm>/state/1`. */
export const stateTopic = (swarm: string): string => `/mycelium/${swarm}/state/1`
/** Gossipsub topic of a swarm's presence beacons: `/mycelium/<swarm>/presence/1`. */
export const presenceTopic = (swarm: string): string => `/mycelium/${swarm}/presence/1`
/** How often a node pulls from one random connected peer (besides on every new connection). */
export const SYNC_INTERVAL_MS = 10_000
/** Presence beacon period: a third of the 30 s presence TTL, so one lost beacon is harmless. */
export const HEARTBEAT_INTERVAL_MS = 10_000
/** Least time between two pulls queued because a beacon showed a writer's chain ahead of ours. */
export const BEHIND_PULL_MIN_INTERVAL_MS = 1_000
/** Deadline of one pull, and of one inbound sync stream, end to end. */
export const SYNC_TIMEOUT_MS = 10_000
/** Update bytes one sync reply carries at most; the puller asks again when `more` is set. */
export const SYNC_REPLY_BYTES = 1024 * 1024
/** Largest sync frame on the wire (compressed reply or request). */
export const SYNC_MAX_FRAME_BYTES = 2 * 1024 * 1024
/** Largest decompressed run batch. */
export const SYNC_MAX_INFLATED_BYTES = 4 * 1024 * 1024
/** Largest number of heads a request may list (one per writer). */
export const SYNC_MAX_HEADS = 100_000
/** Request/reply rounds in one sync stream. */
export const SYNC_MAX_ROUNDS = 16
/** Bytes of each head hash sent in a request. */
export const SYNC_HEAD_HASH_BYTES = 8
/** Inbound sync streams per connection at once. */
export const SYNC_MAX_INBOUND_STREAMS = 2
/** Inbound sync requests a peer may make: burst, then per second. */
export const SYNC_REQUEST_BURST = 20
export const SYNC_REQUESTS_PER_SECOND = 2
/** Gossip envelopes accepted from one neighbour: burst, then per second. */
export const GOSSIP_BURST = 2_000
export const GOSSIP_PER_SECOND = 200
/** Gossip messages a neighbour may send that we Reject before we close its connections. */
export const REJECTS_BEFORE_HANGUP = 10
/** Peers whose rate-limit buckets are remembered (oldest dropped first). */
export const RATE_LIMIT_MAX_PEERS = 10_000
/** Largest gossip message: one envelope. */
export { MAX_ENVELOPE_BYTES as GOSSIP_MAX_MESSAGE_BYTES } from '../../crdt/constants.ts'
/** Largest presence gossip message (one beacon), and most beacons one sync reply may carry. */
export { MAX_BEACON_BYTES as GOSSIP_MAX_BEACON_BYTES, MAX_PRESENCE_WRITERS as SYNC_MAX_BEACONS } from '../../crdt/constants.ts'
