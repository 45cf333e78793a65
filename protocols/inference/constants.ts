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

/** Concurrent inbound inference streams per connection (a session uses one or two). */
export const INFERENCE_MAX_INBOUND_STREAMS = 256

/** Engine steps a stage queues at once for its scheduler (each session has at most one in flight). */
export const INFERENCE_MAX_QUEUED_STEPS = 256
