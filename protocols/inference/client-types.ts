// The client runner's public types (client.ts): a chain's hops, the request, failover options and
// the events a generation yields.
import type { AbortOptions, PeerId, Stream } from '@libp2p/interface'
import type { HiddenCodec as EngineCodec } from '../../engine/codecs.ts'
import type { FrameSigner } from './frame-signature.ts'

/** One stage of a chain: who serves it and its layer range [start, end). */
export interface ChainHop {
  peer: PeerId | string
  start: number
  end: number
}

export interface InferenceRequest extends AbortOptions {
  /** Stages in order; their ranges must tile the model's layers. */
  chain: ChainHop[]
  /** Prompt token ids, BOS first. */
  prompt: number[]
  /** Positions to run, prompt included (llama2.c's steps). */
  maxLength: number
  /** Session id (default: random). */
  sessionId?: string
  /** Manifest id the stages must serve ('' skips the check). */
  model?: string
  /** Hidden-state codec between stages (default f32). */
  codec?: EngineCodec
  sampling?: {
    temperature?: number
    topP?: number
    topK?: number
    /** An integer in [0, 2^53) (the wire's range; the engine's sampler takes it as is); default 1. */
    seed?: number | bigint
    maxTokens?: number
    /** PRNG draws to skip (failover sets it to the tokens already sampled; default 0). */
    skipDraws?: number
  }
  /**
   * Failover: when the session fails or stalls (no token within the deadline), every hop is
   * probed (in parallel, with a deadline); hops that do not answer are replaced by
   * `replace(hop, index)` (e.g. `chainRouter(views).replace`) and the history (prompt and tokens
   * so far) is replayed as one prefill on the repaired chain, so generation continues where it
   * stopped. The tokens equal a run without failure: greedy, and
   * seeded sampling too (the last stage skips the PRNG draws already made).
   */
  failover?: FailoverOptions
  /** Signs the prompt step (the owner's word on the session's inputs; issue 7's audits). Default unsigned. */
  signer?: FrameSigner
}

export interface FailoverOptions {
  /**
   * A replacement for a dead hop: one hop with its layers, several tiling them, or hops tiling a
   * wider span that starts and ends on hop boundaries of the chain (they replace every hop inside
   * it, e.g. a whole new chain); undefined gives up.
   */
  replace: (hop: ChainHop, index: number) => Promise<ChainHop | ChainHop[] | undefined>
  /** Repairs before the failure is final (default FAILOVER_MAX_ATTEMPTS). */
  maxAttempts?: number
  /** Deadline of a hop's liveness probe (default max(500 ms, 2 × the chain's open time)). */
  probeTimeoutMs?: number
  /**
   * A token later than this after the previous one is a stall: the chain counts as failed
   * (default max(2 s, 10 × the median decode gap); see constants.ts).
   */
  tokenTimeoutMs?: number
}

export type InferenceEvent =
  | { type: 'open', sessionId: string, ms: number }
  /** `signature`: the last stage's over (session, position, token) (empty when unsigned). */
  | { type: 'token', id: number, position: number, signature: Uint8Array }
  /**
   * The chain failed (`status`; STALLED when no token came within the deadline) and was
   * repaired: `replaced` hop indices (of the failed chain), `replayed` tokens to re-prefill,
   * `detectMs` from the last token (or the session's start) to the failure's detection,
   * `probeMs` from detection to the repaired chain (probes and replacements), `culprit` how the
   * failed hops were found: `named` by the stages' Result (`peer`), else `probed`. Client-side statuses
   * besides the wire's: DIAL (first stage unreachable), CLOSED (stream ended), RESET (stream or
   * connection reset), STALLED, CANCELLED.
   */
  | { type: 'retry', attempt: number, status: string, replaced: number[], replayed: number, detectMs: number, probeMs: number, culprit: 'named' | 'probed' }
  /** The first token after a repair: `ms` since the failure was detected. */
  | { type: 'resumed', attempt: number, ms: number }
  /**
   * `receipt`: the last stage's signature over every token it sampled in the session, the first from
   * the logits at `first` (frame-signature.ts receiptMessage; empty when unsigned).
   */
  | { type: 'done', reason: 'steps' | 'bos', tokens: number, receipt: Uint8Array, first: number, sessionId: string }

/** Opens a stream to a peer for a protocol (libp2p's `dialProtocol` or a connection manager's `openStream`). */
export type OpenStream = (peer: PeerId | string, protocol: string, options: AbortOptions) => Promise<Stream>
