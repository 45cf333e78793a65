// The stage service's public types: its init (every field optional, defaults in constants.ts), the
// libp2p components it uses, what it serves and the counters it reports.
import type { Connection, ComponentLogger, PeerId, Stream } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { Shard } from '../../engine/index.ts'
import type { SchedulerStats } from './stage-scheduler.ts'

export interface InferenceStageInit {
  /** Swarm whose protocol id is served (default `public`). */
  swarm?: string
  /** Largest frame accepted (default INFERENCE_MAX_FRAME_BYTES). */
  maxFrameBytes?: number
  /** Sessions held at once (default INFERENCE_MAX_SESSIONS) and KV bytes reserved for them (INFERENCE_MAX_KV_BYTES). */
  maxSessions?: number
  maxKvBytes?: number
  /** Deadlines (defaults in constants.ts). */
  openTimeoutMs?: number
  idleTimeoutMs?: number
  sessionTimeoutMs?: number
  /** How long a resumable session that failed further along the ring keeps its KV for a resume. */
  suspendTimeoutMs?: number
  /** Concurrent inbound streams per connection (default INFERENCE_MAX_INBOUND_STREAMS). */
  maxInboundStreams?: number
  /** Engine steps queued for the batching scheduler at once (default INFERENCE_MAX_QUEUED_STEPS). */
  maxQueuedSteps?: number
  /**
   * Check each received frame's signature (after its step's output was passed on): a stage's frame
   * or token must carry its sender's, a client's prompt may be unsigned. Default true.
   */
  verifyFrames?: boolean
}

/** The part of libp2p's registrar the service uses. */
export interface InferenceRegistrar {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => Promise<void>, options: { maxInboundStreams: number, runOnLimitedConnection: boolean }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
}

export interface InferenceStageComponents {
  peerId: PeerId
  /** The node's identity key (libp2p passes it): the stage signs the frames it sends with it. */
  privateKey?: { type: string, raw: Uint8Array }
  registrar: InferenceRegistrar
  connectionManager: Pick<ConnectionManager, 'openStream'>
  logger: ComponentLogger
}

/** What the stage serves: a loaded shard and the manifest id of its model. */
export interface StageShard {
  shard: Shard
  /** Manifest id clients must name ("" or absent: any). */
  model?: string
}

/** Counters of a stage (`stats`): sessions, steps and tokens, and how its decode steps were batched. */
export interface StageStats extends SchedulerStats {
  opened: number
  refused: number
  steps: number
  tokens: number
  /** Failover: sessions that kept a failed session's KV (span-only replay), and the input rows they did not recompute. */
  resumed: number
  keptRows: number
  /** Ed25519 signatures this stage made for the frames it sent, and the frames they covered (a scheduler pass's frames share one). */
  signatures: number
  signedFrames: number
  /** Ed25519 verifications of received frames actually run, and frames believed from an already verified batch root. */
  verifications: number
  verifiedFromCache: number
}
