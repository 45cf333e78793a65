// The swarm-state replication service: a libp2p service that keeps a SwarmState in step with
// the swarm. Own envelopes are published on the swarm's state topic and own presence beacons on
// its presence topic; topic validators check every received message (and reject, which lowers
// the sender's gossipsub score); /mycelium/sync/1 pulls what gossip lost, on every new
// connection and periodically, and hands over the responder's live beacons.
//
//   services: {
//     identify: identify(),
//     pubsub: gossipsub(),                       // must be registered as `pubsub`
//     swarmSync: swarmSync({ swarm, dataDir })   // then libp2p.services.swarmSync.state
//   }
import { serviceDependencies, type AbortOptions, type ComponentLogger, type Logger, type PeerId, type PrivateKey, type Startable, type Stream } from '@libp2p/interface'
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub'
import {
  decodeBeacon, decodeEnvelope, encodeBeacon, encodeEnvelope, fileEnvelopeStore, keySigner, openSwarmState, writerIdentity,
  type Beacon, type Envelope, type RejectReason, type SwarmState
} from '../../crdt/index.ts'
import { pullOver, serveOver } from './anti-entropy.ts'
import {
  BEHIND_PULL_MIN_INTERVAL_MS, GOSSIP_BURST, GOSSIP_MAX_BEACON_BYTES, GOSSIP_MAX_MESSAGE_BYTES, GOSSIP_PER_SECOND, HEARTBEAT_INTERVAL_MS, RATE_LIMIT_MAX_PEERS, REJECTS_BEFORE_HANGUP, SYNC_INTERVAL_MS, SYNC_MAX_INBOUND_STREAMS,
  SYNC_PROTOCOL, SYNC_REPLY_BYTES, SYNC_REQUEST_BURST, SYNC_REQUESTS_PER_SECOND, SYNC_TIMEOUT_MS, presenceTopic, stateTopic
} from './constants.ts'
import { SyncNotStartedError } from './errors.ts'
import { TokenBuckets } from './token-bucket.ts'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'

/** Refusals an honest forwarder cannot foresee (they depend on our state): Ignore, not Reject. */
const STATEFUL_REFUSALS = new Set<RejectReason>([
  'equivocation', 'clock-gap', 'pending-full', 'flagged-writer', 'client-id-collision', 'wrong-chain', 'clock-skew', 'presence-full',
  // A neighbour behind on the writer's chain may hold an over-quota envelope as pending in good faith.
  'quota', 'writers-full'
])

export interface SwarmSyncInit {
  /** Swarm name (default 'public'): topic `/mycelium/<swarm>/state/1`, hashed into envelopes. */
  swarm?: string
  /** Directory of the envelope log; default: memory only. */
  dataDir?: string
  /** A ready SwarmState to replicate instead of opening one (tests, or a daemon that owns it). */
  state?: SwarmState
  /**
   * The node's key signed envelopes before (its identity file was not created this run). With an
   * empty store, own writes then wait for the first pull, so the node continues its chain from
   * what peers hold instead of restarting it at seq 1 (which peers would prove an equivocation).
   */
  identityExisted?: boolean
  /**
   * Publish a presence beacon (and drop expired ones) this often (default HEARTBEAT_INTERVAL_MS);
   * 0 disables. Beacons are not envelopes: they never enter the log.
   */
  heartbeatIntervalMs?: number
  /** Pull from one random peer this often (default SYNC_INTERVAL_MS); 0 disables the timer. */
  syncIntervalMs?: number
  /** Deadline of one pull and one served stream (default SYNC_TIMEOUT_MS). */
  syncTimeoutMs?: number
  /** Update bytes per sync reply, asked for and served at most (default SYNC_REPLY_BYTES). */
  replyBytes?: number
  /** Gossip envelopes accepted per neighbour: burst (GOSSIP_BURST) and rate (GOSSIP_PER_SECOND). */
  gossipBurst?: number
  gossipPerSecond?: number
  /** Sync requests served per peer: burst (SYNC_REQUEST_BURST) and rate (SYNC_REQUESTS_PER_SECOND). */
  syncBurst?: number
  syncPerSecond?: number
  /** Clock for rate limits and the state (default Date.now). */
  clock?: () => number
  /** Gossip Rejects from one neighbour before the service hangs up on it (default REJECTS_BEFORE_HANGUP). */
  rejectsBeforeHangup?: number
  /** Picks the peer of a periodic pull (default Math.random); inject a seeded PRNG in tests. */
  random?: () => number
  /** Test hook: drop this inbound gossip message (simulated loss). Never set in production. */
  dropInbound?: () => boolean
  /** Test hook: delay before checking an inbound gossip message (reordering), in ms. */
  inboundDelayMs?: () => number
}

export interface SwarmSyncComponents {
  peerId: PeerId
  privateKey: PrivateKey
  registrar: Registrar
  connectionManager: ConnectionManager
  logger: ComponentLogger
  pubsub: GossipSub
}

/** Counters of the service (payload bytes: envelopes and sync frames, not libp2p framing). */
export interface SwarmSyncStats {
  gossipAccepted: number
  gossipRejected: number
  gossipIgnored: number
  gossipDropped: number
  rateLimited: number
  gossipBytesIn: number
  gossipBytesOut: number
  /** Presence beacon bytes received and published on the presence topic (not in gossipBytes*). */
  beaconBytesIn: number
  beaconBytesOut: number
  pulls: number
  pullsFailed: number
  syncBytesIn: number
  syncBytesOut: number
  /** Compressed run bytes received (part of syncBytesIn), and the same decompressed. */
  syncRunBytesIn: number
  syncRawBytesIn: number
  syncRefused: number
  /** Neighbours disconnected for sending too many invalid messages. */
  hangups: number
}

export class SwarmSync implements Startable {
  readonly swarm: string
  readonly topic: string
  readonly presenceTopic: string
  readonly protocol = SYNC_PROTOCOL
  readonly stats: SwarmSyncStats = {
    gossipAccepted: 0, gossipRejected: 0, gossipIgnored: 0, gossipDropped: 0, rateLimited: 0, gossipBytesIn: 0,
    gossipBytesOut: 0, beaconBytesIn: 0, beaconBytesOut: 0, pulls: 0, pullsFailed: 0, syncBytesIn: 0, syncBytesOut: 0, syncRunBytesIn: 0, syncRawBytesIn: 0, syncRefused: 0, hangups: 0
  }

  private readonly components: SwarmSyncComponents
  private readonly init: SwarmSyncInit
  private readonly log: Logger
  private readonly clock: () => number
  private readonly gossipLimits: TokenBuckets
  private readonly syncLimits: TokenBuckets
  private current: SwarmState | undefined
  private shutdown = new AbortController()
  private timer: ReturnType<typeof setInterval> | undefined
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined
  private topologyId: string | undefined
  private unsubscribeEnvelopes: () => void = () => {}
  private unsubscribeBeacons: () => void = () => {}
  private readonly queue = new Set<string>()
  /** Connected peers that speak the sync protocol (from the registrar topology). */
  private readonly syncPeers = new Set<string>()
  private pulling: Promise<void> | undefined
  private idleWaiters: Array<() => void> = []
  private readonly rejectsByPeer = new Map<string, number>()
  private lastBehindPull = -Infinity

  readonly [serviceDependencies] = ['@libp2p/pubsub']
  readonly [Symbol.toStringTag] = 'mycelium/swarm-sync'

  constructor (components: SwarmSyncComponents, init: SwarmSyncInit = {}) {
    this.components = components
    this.init = init
    this.swarm = init.swarm ?? 'public'
    this.topic = stateTopic(this.swarm)
    this.presenceTopic = presenceTopic(this.swarm)
    this.clock = init.clock ?? Date.now
    this.log = components.logger.forComponent('mycelium:protocols:swarm-sync')
    this.gossipLimits = new TokenBuckets(init.gossipBurst ?? GOSSIP_BURST, init.gossipPerSecond ?? GOSSIP_PER_SECOND, this.clock)
    this.syncLimits = new TokenBuckets(init.syncBurst ?? SYNC_REQUEST_BURST, init.syncPerSecond ?? SYNC_REQUESTS_PER_SECOND, this.clock)
  }

  /** The replicated document (available once started). */
  get state (): SwarmState {
    if (this.current === undefined) throw new SyncNotStartedError('swarm-sync is not started: its state exists once libp2p has started the service')
    return this.current
  }

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    this.current = this.init.state ?? await openSwarmState({
      swarm: this.swarm,
      signer: keySigner(this.components.privateKey as unknown as Parameters<typeof keySigner>[0]),
      clock: this.clock,
      store: this.init.dataDir === undefined ? undefined : fileEnvelopeStore(this.init.dataDir)
    })
    if (this.current.loadReport.status === 'corrupt') this.log.error('swarm state store was corrupt, rebuilding from peers: %s', this.current.loadReport.reason)
    if (this.init.identityExisted === true && this.current.loadReport.status === 'empty') this.current.pauseWrites()
    const { registrar } = this.components
    await registrar.handle(this.protocol, async (stream, connection) => {
      const peer = connection.remotePeer.toString()
      const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.init.syncTimeoutMs ?? SYNC_TIMEOUT_MS)])
      try {
        const traffic = await serveOver(stream, this.state, () => this.allowSync(peer), this.init.replyBytes ?? SYNC_REPLY_BYTES, { signal })
        this.stats.syncBytesIn += traffic.bytesIn
        this.stats.syncBytesOut += traffic.bytesOut
      } catch (err) {
        this.log('sync stream from %s failed: %e', peer, err)
        stream.abort(err as Error)
      }
    }, { maxInboundStreams: SYNC_MAX_INBOUND_STREAMS, runOnLimitedConnection: false })
    this.topologyId = await registrar.register(this.protocol, {
      onConnect: (peerId) => {
        this.syncPeers.add(peerId.toString())
        this.requestPull(peerId.toString())
      },
      onDisconnect: (peerId) => { this.syncPeers.delete(peerId.toString()) }
    })
  }

  /** Gossip needs the pubsub service running, which libp2p guarantees only after start(). */
  afterStart (): void {
    const { pubsub } = this.components
    pubsub.topicValidators.set(this.topic, async (peer, message) => await this.validate(peer, message))
    pubsub.topicValidators.set(this.presenceTopic, async (peer, message) => await this.validateBeacon(peer, message))
    pubsub.subscribe(this.topic)
    pubsub.subscribe(this.presenceTopic)
    this.unsubscribeEnvelopes = this.state.onEnvelope((envelope) => { this.publish(envelope) })
    this.unsubscribeBeacons = this.state.onBeacon((beacon) => { this.publishBeacon(beacon) })
    const interval = this.init.syncIntervalMs ?? SYNC_INTERVAL_MS
    if (interval > 0) this.timer = setInterval(() => { this.pullRandomPeer() }, interval)
    const heartbeat = this.init.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS
    if (heartbeat > 0) {
      const beat = (): void => {
        this.state.prunePresence()
        this.state.heartbeat({ signal: this.shutdown.signal }).catch((err: unknown) => { this.log('heartbeat failed: %e', err) })
      }
      this.heartbeatTimer = setInterval(beat, heartbeat)
      beat()
    }
  }

  beforeStop (): void {
    this.shutdown.abort()
    if (this.timer !== undefined) clearInterval(this.timer)
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer)
    this.timer = undefined
    this.heartbeatTimer = undefined
    this.unsubscribeEnvelopes()
    this.unsubscribeBeacons()
    const { pubsub } = this.components
    for (const topic of [this.topic, this.presenceTopic]) {
      pubsub.topicValidators.delete(topic)
      if (pubsub.getTopics().includes(topic)) pubsub.unsubscribe(topic)
    }
  }

  async stop (): Promise<void> {
    const { registrar } = this.components
    if (this.topologyId !== undefined) registrar.unregister(this.topologyId)
    await registrar.unhandle(this.protocol)
    await this.pulling?.catch(() => undefined)
    if (this.init.state === undefined) await this.current?.close()
  }

  /** Pulls from `peerId` soon (one pull runs at a time, so a node never fetches a delta twice). */
  requestPull (peerId: string): void {
    if (this.shutdown.signal.aborted) return
    this.queue.add(peerId)
    this.pulling ??= this.drainQueue().finally(() => {
      this.pulling = undefined
      if (this.queue.size > 0 && !this.shutdown.signal.aborted) this.requestPull([...this.queue][0])
      else for (const resolve of this.idleWaiters.splice(0)) resolve()
    })
  }

  /** Resolves when no pull is queued or running (or when the signal aborts). */
  async whenIdle (options: AbortOptions = {}): Promise<void> {
    if (this.pulling === undefined) return
    await new Promise<void>((resolve, reject) => {
      this.idleWaiters.push(resolve)
      options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }, { once: true })
    })
  }

  /** Pulls from one connected peer now; returns how many envelopes it added (0 on failure). */
  async pull (peerId: string, options: AbortOptions = {}): Promise<number> {
    const peer = this.components.connectionManager.getConnections().find((c) => c.remotePeer.toString() === peerId)?.remotePeer
    if (peer === undefined) return 0
    const signals = [this.shutdown.signal, AbortSignal.timeout(this.init.syncTimeoutMs ?? SYNC_TIMEOUT_MS)]
    if (options.signal !== undefined) signals.push(options.signal)
    const signal = AbortSignal.any(signals)
    this.stats.pulls++
    let stream: Stream | undefined
    try {
      stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal })
      const result = await pullOver(stream, this.state, peerId, this.init.replyBytes ?? SYNC_REPLY_BYTES, { signal })
      this.stats.syncBytesIn += result.bytesIn
      this.stats.syncBytesOut += result.bytesOut
      this.stats.syncRunBytesIn += result.runBytesIn
      this.stats.syncRawBytesIn += result.rawBytesIn
      // After a corrupt store, own writes wait until peers had a chance to return our chain.
      if (this.state.writesPaused) this.state.resumeWrites()
      return result.applied
    } catch (err) {
      this.stats.pullsFailed++
      this.log('pull from %s failed: %e', peerId, err)
      stream?.abort(err as Error)
      return 0
    }
  }

  private async drainQueue (): Promise<void> {
    while (this.queue.size > 0 && !this.shutdown.signal.aborted) {
      const [peerId] = this.queue
      this.queue.delete(peerId)
      await this.pull(peerId)
    }
  }

  private pullRandomPeer (): void {
    const peers = [...this.syncPeers].sort()
    if (peers.length === 0) return
    this.requestPull(peers[Math.floor((this.init.random ?? Math.random)() * peers.length)])
  }

  private allowSync (peer: string): boolean {
    if (this.syncLimits.take(peer)) return true
    this.stats.syncRefused++
    return false
  }

  private publish (envelope: Envelope): void {
    const bytes = encodeEnvelope(envelope)
    this.stats.gossipBytesOut += bytes.length
    this.components.pubsub.publish(this.topic, bytes).catch((err: unknown) => {
      this.log('publish of seq %d failed (anti-entropy will carry it): %e', envelope.seq, err)
    })
  }

  private publishBeacon (beacon: Beacon): void {
    const bytes = encodeBeacon(beacon)
    this.stats.beaconBytesOut += bytes.length
    this.components.pubsub.publish(this.presenceTopic, bytes).catch((err: unknown) => {
      this.log('publish of a beacon failed (anti-entropy replies carry it): %e', err)
    })
  }

  /**
   * The checks both topics share before anything is decoded: the test-only loss hook, then the
   * neighbour's token bucket (one per neighbour for both topics). False → Ignore the message.
   */
  private admitGossip (from: string): boolean {
    if (this.init.dropInbound?.() === true) {
      this.stats.gossipDropped++
      return false
    }
    if (!this.gossipLimits.take(from)) {
      this.stats.rateLimited++
      return false
    }
    return true
  }

  /**
   * Presence topic validator: the same loss hook, rate limit (one bucket per neighbour for both
   * topics) and Reject accounting as envelopes. A beacon newer than the one held is Accepted;
   * a stale one Ignored. A beacon showing the writer's chain ahead of ours queues a pull.
   */
  private async validateBeacon (peer: PeerId, message: Message): Promise<TopicValidatorResult> {
    const from = peer.toString()
    if (!this.admitGossip(from)) return TopicValidatorResult.Ignore
    this.stats.beaconBytesIn += message.data.length
    const reject = (why: string): TopicValidatorResult => {
      this.log('rejected beacon from %s: %s', from, why)
      return this.rejectFrom(peer)
    }
    if (message.type !== 'signed') return reject('unsigned gossip')
    let beacon: Beacon
    try {
      if (message.data.length > GOSSIP_MAX_BEACON_BYTES) throw new Error(`message of ${message.data.length} bytes`)
      beacon = decodeBeacon(message.data)
    } catch (err) {
      return reject(`not a beacon: ${(err as Error).message}`)
    }
    if (writerIdentity(beacon.writer)?.peerId !== message.from.toString()) return reject('beacon published by a peer other than its writer (replay)')
    const result = this.state.receiveBeacon(beacon, from)
    if (result.status === 'accepted') {
      this.stats.gossipAccepted++
      // Throttled: a writer could sign beacons claiming any seq, one per millisecond.
      if (result.behind && this.clock() - this.lastBehindPull >= BEHIND_PULL_MIN_INTERVAL_MS) {
        this.lastBehindPull = this.clock()
        this.requestPull(from)
      }
      return TopicValidatorResult.Accept
    }
    if (result.status === 'stale' || STATEFUL_REFUSALS.has(result.reason)) {
      this.stats.gossipIgnored++
      return TopicValidatorResult.Ignore
    }
    return reject(`${result.reason} (${result.detail})`)
  }

  /** Topic validator: every gossip envelope is checked and applied here, before it is forwarded. */
  private async validate (peer: PeerId, message: Message): Promise<TopicValidatorResult> {
    const from = peer.toString()
    if (!this.admitGossip(from)) return TopicValidatorResult.Ignore
    this.stats.gossipBytesIn += message.data.length
    const envelope = this.check(peer, message)
    if (!('writer' in envelope)) return envelope.verdict
    const delay = this.init.inboundDelayMs?.() ?? 0
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
    const result = this.state.receive(envelope, from)
    if (result.status === 'accepted' || result.status === 'pending') {
      this.stats.gossipAccepted++
      return TopicValidatorResult.Accept
    }
    // Duplicates, and refusals that depend on what this replica holds, are dropped without
    // blaming the neighbour: an honest peer on another branch of a forked writer (or without
    // the fork proof yet, or with room in its pending buffer) forwards them in good faith.
    if (result.status === 'duplicate' || STATEFUL_REFUSALS.has(result.reason)) {
      this.stats.gossipIgnored++
      return TopicValidatorResult.Ignore
    }
    this.log('rejected gossip from %s: %s (%s)', from, result.reason, result.detail)
    return this.rejectFrom(peer)
  }

  /**
   * Counts a Reject against the neighbour (gossipsub lowers its score only where topic score
   * parameters are configured) and hangs up on it once it has sent too many: an honest peer
   * validates before it forwards, so it never sends what we Reject.
   */
  private rejectFrom (peer: PeerId): TopicValidatorResult {
    this.stats.gossipRejected++
    const key = peer.toString()
    const count = (this.rejectsByPeer.get(key) ?? 0) + 1
    if (!this.rejectsByPeer.has(key) && this.rejectsByPeer.size >= RATE_LIMIT_MAX_PEERS) this.rejectsByPeer.delete(this.rejectsByPeer.keys().next().value as string)
    this.rejectsByPeer.set(key, count)
    if (count === (this.init.rejectsBeforeHangup ?? REJECTS_BEFORE_HANGUP)) {
      this.stats.hangups++
      this.log('hanging up on %s after %d invalid messages', key, count)
      this.components.connectionManager.closeConnections(peer).catch((err: unknown) => { this.log('hang-up of %s failed: %e', key, err) })
    }
    return TopicValidatorResult.Reject
  }

  /** Checks that need no state: signed gossip, size, decodable, published by the writer itself. */
  private check (peer: PeerId, message: Message): Envelope | { verdict: TopicValidatorResult } {
    const reject = (why: string): { verdict: TopicValidatorResult } => {
      this.log('rejected gossip from %s: %s', peer, why)
      return { verdict: this.rejectFrom(peer) }
    }
    if (message.type !== 'signed') return reject('unsigned gossip')
    if (message.data.length > GOSSIP_MAX_MESSAGE_BYTES) return reject(`message of ${message.data.length} bytes`)
    let envelope: Envelope
    try {
      envelope = decodeEnvelope(message.data)
    } catch (err) {
      return reject(`does not decode: ${(err as Error).message}`)
    }
    // Only a writer publishes its envelopes; anyone else re-publishing one is replaying it.
    if (writerIdentity(envelope.writer)?.peerId !== message.from.toString()) return reject('envelope published by a peer other than its writer (replay)')
    return envelope
  }
}

/** libp2p service factory: `services: { swarmSync: swarmSync({ swarm, dataDir }) }`. */
export function swarmSync (init: SwarmSyncInit = {}): (components: SwarmSyncComponents) => SwarmSync {
  return (components) => new SwarmSync(components, init)
}
