// Defaults of the inference protocol. Durations in milliseconds, sizes in bytes.

/** Protocol name and version inside `/mycelium/<swarm>/<name>/<version>` (see swarm.ts). */
export const INFERENCE_PROTOCOL_NAME = 'inference'
export const INFERENCE_PROTOCOL_VERSION = '1.0.0'

/** Largest frame the decoder accepts (a prefill chunk of hidden states is the big one). */
export const INFERENCE_MAX_FRAME_BYTES = 16 * 1024 * 1024

/** Longest session id, peer id string, model id and detail string. */
export const INFERENCE_MAX_ID_LENGTH = 128

/** Most stages after the one being opened (the `chain` of OpenSession). */
export const INFERENCE_MAX_CHAIN = 64

/** Sessions one stage holds at once, and bytes of KV cache it reserves for them in all. */
export const INFERENCE_MAX_SESSIONS = 64
export const INFERENCE_MAX_KV_BYTES = 256 * 1024 * 1024

/** Deadline for the first frame of an inbound stream and for opening the rest of the chain. */
export const INFERENCE_OPEN_TIMEOUT_MS = 10_000

/** A stream that expects hidden states or tokens and gets none for this long ends its session. */
export const INFERENCE_IDLE_TIMEOUT_MS = 60_000

/** A session ends this long after it opened, finished or not (session expiry). */
export const INFERENCE_SESSION_TIMEOUT_MS = 10 * 60_000

/** Grace for writing a last status frame and closing a stream. */
export const INFERENCE_CLOSE_TIMEOUT_MS = 1000

/**
 * A resumable session that failed further along the ring keeps its KV cache (and the frames it
 * passed on) this long for the client's repaired chain to adopt (span-only replay), then frees it.
 */
export const INFERENCE_SUSPEND_TIMEOUT_MS = 15_000
/** Signature checks of received frames one session may have on the thread pool before its next step waits for one. */
export const INFERENCE_MAX_PENDING_CHECKS = 8
/** Verified batch roots (signer, root) a stage remembers (LRU): a batch's other frames cost no verification. */
export const INFERENCE_MAX_VERIFIED_ROOTS = 1024

/** Largest frame a liveness probe accepts back (a Result: status, ids, short detail). */
export const INFERENCE_PROBE_MAX_FRAME_BYTES = 4096

/** Concurrent inbound inference streams per connection (a session uses one or two). */
export const INFERENCE_MAX_INBOUND_STREAMS = 256

/** Routing chains from the swarm state (route-chain.ts): the request shape costed when the caller gives none. */
export const ROUTE_DEFAULT_PROMPT_TOKENS = 128
export const ROUTE_DEFAULT_GEN_TOKENS = 128

/** Hidden bytes per token assumed when the caller does not say (4096-wide f16). */
export const ROUTE_DEFAULT_HIDDEN_BYTES = 8192

/** Link bandwidth assumed when neither end published one (100 Mbit/s). */
export const ROUTE_DEFAULT_BANDWIDTH_BYTES_PER_S = 12_500_000

/** Node-record capability key of a published RTT to a peer (`rttMs:<peer id>`; node/ writes it). */
export const ROUTE_RTT_CAPABILITY_PREFIX = 'rttMs:'

/**
 * Failover stall detection (client.ts): a token later than max(floor, factor × the median decode
 * gap so far) means the chain stalled. Decode gaps are steady but have a tail (GC, other
 * sessions' prefill chunks on a shared stage, a busy machine): 10× the median stays clear of it,
 * and the 2 s floor keeps sub-millisecond models on a loaded machine from false alarms (a false
 * alarm costs a replay, never a wrong token). Until MIN_SAMPLES gaps are seen, and for the first
 * token of every session (open + prefill), the first-token deadline applies: above the stages'
 * own 10 s open deadline, so a hop that cannot open answers with its status first.
 */
export const FAILOVER_TOKEN_TIMEOUT_FLOOR_MS = 2000
export const FAILOVER_TOKEN_TIMEOUT_FACTOR = 10
export const FAILOVER_TOKEN_TIMEOUT_MIN_SAMPLES = 4
export const FAILOVER_FIRST_TOKEN_TIMEOUT_MS = 15_000

/** Decode gaps kept for the median (the most recent ones). */
export const FAILOVER_GAP_WINDOW = 64

/**
 * Liveness probe of a hop after a failure: opening a stream of the protocol (one multistream
 * round trip to the stage's event loop) within max(floor, factor × the chain's open time). A
 * SIGSTOPped or wedged stage never answers; a live one answers in about one RTT.
 */
export const FAILOVER_PROBE_TIMEOUT_FLOOR_MS = 500
export const FAILOVER_PROBE_TIMEOUT_FACTOR = 2

/** Repairs of one request before its failure is final. */
export const FAILOVER_MAX_ATTEMPTS = 3

/** Engine steps a stage queues at once for its scheduler (each session has at most one in flight). */
export const INFERENCE_MAX_QUEUED_STEPS = 256
