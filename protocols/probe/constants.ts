// Defaults of the probe protocol. Durations in milliseconds, sizes in bytes.

export const PROBE_PROTOCOL = '/mycelium/probe/1'

/** Largest payload either way in one request/response (the listener refuses more). */
export const PROBE_MAX_PAYLOAD_BYTES = 1 << 20

/** Largest frame the decoder accepts: the payload plus protobuf fields. */
export const PROBE_MAX_FRAME_BYTES = PROBE_MAX_PAYLOAD_BYTES + 64

/** Requests served on one stream before the listener closes it. */
export const PROBE_MAX_REQUESTS_PER_STREAM = 16

/** Deadline of one inbound stream, and of one outbound probe. */
export const PROBE_HANDLER_TIMEOUT_MS = 10_000
export const PROBE_TIMEOUT_MS = 10_000

/** Pings (empty payload) per probe for the RTT estimate, and bytes each way for bandwidth. */
export const PROBE_PINGS = 3
export const PROBE_BULK_BYTES = 256 * 1024

/** Re-probe connected peers this often; 0 disables the timer. */
export const PROBE_INTERVAL_MS = 60_000

/** Weight of the newest probe in a peer's smoothed bandwidth. */
export const PROBE_EWMA_ALPHA = 0.3

/** A peer's RTT is the least of its last this many probes (see probe-service.ts). */
export const PROBE_RTT_WINDOW = 5

/** Peers whose estimates are kept; the longest unprobed is forgotten first. */
export const PROBE_MAX_PEERS = 1024

/** Concurrent inbound probe streams per connection. */
export const PROBE_MAX_INBOUND_STREAMS = 2
