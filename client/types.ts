// The SDK's public types: client init, generate options and events, swarm info, the client.
import type { AbortOptions, PeerId, PeerStore, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { HiddenCodec, Tokenizer } from '../engine/index.ts'
import type { ChainHop, FrameSigner } from '../protocols/index.ts'
import type { ModelManifest } from '../sharding/index.ts'
import type { ChatMessage } from './chat.ts'
import type { ModelInfo, SwarmReader } from './route.ts'
import type { ConsensusHost, ConsensusMeta } from './consensus.ts'

/** Where the client gets a model's tokenizer: one for every model, or a lookup by manifest. */
export type TokenizerOption = Tokenizer | ((manifest: ModelManifest) => Promise<Tokenizer | undefined>)

/** The libp2p surface the client uses (a full daemon host or a light client node both have it). */
export interface ClientLibp2p {
  peerId: PeerId
  peerStore: Pick<PeerStore, 'merge'>
  getConnections: (peer?: PeerId) => unknown[]
  dialProtocol: (peer: PeerId | Multiaddr | Multiaddr[], protocol: string, options?: AbortOptions) => Promise<Stream>
}

export interface ClientInit {
  libp2p: ClientLibp2p
  swarm: string
  /** The replicated swarm document (protocols/sync's `swarmSync().state`). */
  state: SwarmReader
  tokenizer?: TokenizerOption
  /** Who is online (default: the state's presence); a daemon adds itself. */
  online?: () => string[]
  /** This node's peer id when it is a swarm member (a daemon): the router then counts its published RTTs. */
  self?: string
  /** How long generate() waits for the model to appear and be covered (default 10 s). */
  routeWaitMs?: number
  /**
   * A stream to this node's own stage service (libp2p cannot dial itself): a daemon that serves
   * layers and runs the API hands its first-stage requests over in process.
   */
  openLocal?: (protocol: string, options: AbortOptions) => Promise<Stream>
  /** The consensus round owner's reputation view and record writer (issue 7; client/consensus.ts). */
  consensus?: ConsensusHost
  /** Called once by close() (connect() stops its own node here). */
  onClose?: () => Promise<void>
  /**
   * Signs the prompt step of every session this client opens (issue 7: the owner's word on a
   * session's inputs, checked by spot-checks). Default: the stage service's signer when `libp2p`
   * runs one (a daemon), else prompts go unsigned.
   */
  signer?: FrameSigner
}

export interface GenerateOptions {
  /** Text (tokenized here, BOS first) or token ids. */
  prompt: string | number[]
  /** Manifest id; default: the only model offered in the swarm. */
  model?: string
  /** Tokens to generate at most (default 128; prompt + maxTokens ≤ the model's context). */
  maxTokens?: number
  /** 0 is greedy (default 1, as OpenAI). */
  temperature?: number
  /** Nucleus threshold in (0, 1]; 1 disables it (default). */
  topP?: number
  topK?: number
  /** Sampling seed (default random); the same seed gives the same tokens. */
  seed?: number
  /** Stop before any of these strings (not included in the output). */
  stop?: string[]
  /**
   * Verified generation (issue 7): k answers from chains with distinct nodes (seeds seed + i),
   * judged pairwise by reputation-drawn judges with commit–reveal, ranked by Bradley–Terry; the
   * winner is streamed and `done.consensus` has the ranking. `true` = k 3, deadline 60 s;
   * `replicas` is k's old name.
   */
  consensus?: boolean | { k?: number, replicas?: number, deadlineMs?: number }
  /** Hidden-state codec between stages (default f32). */
  codec?: HiddenCodec
  signal?: AbortSignal
}

export interface Usage { promptTokens: number, completionTokens: number, totalTokens: number }

export type GenerateEvent =
  | { type: 'token', id: number, text: string }
  /** `text` is the whole output; `tail` the part of it no token event carried yet (held back for a stop string or a split character). */
  | { type: 'done', finishReason: 'stop' | 'length', usage: Usage, model: string, text: string, tail: string, chain: ChainHop[], consensus?: ConsensusMeta }

export interface SwarmInfo {
  swarm: string
  /** This client's peer id. */
  self: string
  online: string[]
  members: Array<{ peerId: string, online: boolean, layers: Array<{ model: string, start: number, end: number }>, model?: string, version: string }>
  models: ModelInfo[]
}

export interface MyceliumClient {
  readonly peerId: string
  /** The swarm's name. */
  readonly swarmName: string
  generate: (options: GenerateOptions) => AsyncGenerator<GenerateEvent>
  chat: (messages: ChatMessage[], options?: Omit<GenerateOptions, 'prompt'>) => AsyncGenerator<GenerateEvent>
  /** The model a request would use (resolves the default; ModelNotFoundError). */
  resolveModel: (model?: string) => ModelInfo
  /** The tokenizer of a model (TokenizerUnavailableError). */
  tokenizer: (model: string) => Promise<Tokenizer>
  swarm: () => SwarmInfo
  models: () => ModelInfo[]
  /**
   * Reputation as this client derives it from the replicated round records (issue 7): per node,
   * admitted (calibrated or genesis), excluded (a confirmed failed spot-check), evidence and the
   * weight its votes carry. A consensus round schedules judges with this view.
   */
  reputation: () => Record<string, { admitted: boolean, excluded: boolean, positive: number, negative: number, weight: number }>
  close: () => Promise<void>
}
