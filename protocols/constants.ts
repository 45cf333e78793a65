// Defaults of protocols/ (durations in milliseconds, sizes in bytes). Sections per protocol.

// --- swarm naming (swarm.ts) ---
/** The swarm a node joins when none is named: the public Mycelium swarm. */
export const DEFAULT_SWARM = 'public'
/** Longest swarm name: it is embedded in protocol ids, DHT protocols and topic names. */
export const MAX_SWARM_NAME_LENGTH = 48

// --- bulk transfer (bulk.ts) ---
/** Largest header or status frame of the bulk protocol; anything longer is garbage. */
export const BULK_MAX_FRAME_BYTES = 64
/** Largest transfer a receiver accepts by default (1 GiB). */
export const BULK_MAX_TRANSFER_BYTES = 1024 * 1024 * 1024
/** How long a receiver waits for one whole transfer before it gives up. */
export const BULK_HANDLER_TIMEOUT_MS = 120_000
/** Deadline for writing the receiver's status frame. */
export const BULK_REPLY_TIMEOUT_MS = 5_000
/** Concurrent inbound bulk streams per connection. */
export const BULK_MAX_INBOUND_STREAMS = 4
/** Chunk size a sender writes. */
export const BULK_CHUNK_BYTES = 64 * 1024

// --- reverse dial (reverse-dial.ts) ---
/** Largest reverse-dial frame (request or response). */
export const REVERSE_DIAL_MAX_FRAME_BYTES = 2048
/** Most addresses a reverse-dial request may list. */
export const REVERSE_DIAL_MAX_ADDRS = 8
/** Deadline of one reverse dial, request to answer. */
export const REVERSE_DIAL_TIMEOUT_MS = 10_000
/** Least time between two reverse dials requested by the same peer. */
export const REVERSE_DIAL_MIN_INTERVAL_MS = 5_000

// --- TCP hole punch (hole-punch.ts) ---
/** Largest hole-punch frame. */
export const PUNCH_MAX_FRAME_BYTES = 128
/** Deadline of the punch exchange on the relayed connection. */
export const PUNCH_EXCHANGE_TIMEOUT_MS = 5_000
