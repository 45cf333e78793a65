// Live inference load, for load-aware routing. Every serving daemon publishes on the swarm's load
// topic (`/mycelium/<swarm>/load/1`, gossipsub, signed by its peer key) what the router's
// RouteNode wants: `load` (open sessions), `slots` (sessions it can hold: the stage's session
// limit, or fewer when the KV budget runs out first), its free KV bytes, and `stepLayerMs` (the
// measured time per layer its recent decode tokens spent in a pass, from the step timer; only
// while it has sessions — an idle node's last busy figure would mark it slow forever).
//
// Load is presence-like: it changes every second and is worth nothing a minute later, so it never
// enters the node record (every record write is an envelope every replica keeps forever). Like a
// presence beacon it is kept in memory only, per peer, bounded, and expires (LOAD_TTL_MS). A
// daemon publishes when a figure changed (at most every LOAD_PUBLISH_MIN_MS) and otherwise every
// LOAD_KEEPALIVE_MS. Readers see it through `withLoad(state, table)`: the records with `load`,
// `slots` and `stepLayerMs` merged into their capabilities (a local view: nothing is written),
// which protocols/inference/route-chain.ts maps onto the router's RouteNode fields.
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Message } from '@libp2p/gossipsub'
import type { Logger } from 'pino'
import type { NodeRecord } from '../crdt/index.ts'
import { INFERENCE_MAX_KV_BYTES, INFERENCE_MAX_SESSIONS } from '../protocols/inference/constants.ts'
import type { StepTimer } from '../sharding/index.ts'
import { LOAD_CHECK_MS, LOAD_KEEPALIVE_MS, LOAD_MAX_MESSAGE_BYTES, LOAD_MAX_PEERS, LOAD_PUBLISH_MIN_MS, LOAD_STEP_REPUBLISH_FRACTION, LOAD_TTL_MS } from './constants.ts'
import type { MyceliumHost } from './host.ts'

/** What a node says about its load. */
export interface NodeLoad {
  /** Open inference sessions. */
  load: number
  /** Sessions it can hold now (open ones included). */
  slots: number
  /** KV bytes it can still reserve. */
  kvFreeBytes: number
  /** Measured time per layer of its recent decode passes (ms); absent while idle. */
  stepLayerMs?: number
}

export function loadTopic (swarm: string): string {
  return `/mycelium/${swarm}/load/1`
}

function count (x: unknown, max: number): number | undefined {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= max ? x : undefined
}

/** Decodes and checks a load message (JSON, ≤ LOAD_MAX_MESSAGE_BYTES); undefined when malformed. */
export function decodeLoad (bytes: Uint8Array): NodeLoad | undefined {
  if (bytes.length > LOAD_MAX_MESSAGE_BYTES) return undefined
  let v: unknown
  try { v = JSON.parse(new TextDecoder().decode(bytes)) } catch { return undefined } // reason: malformed gossip is refused, not thrown
  if (typeof v !== 'object' || v === null) return undefined
  const o = v as Record<string, unknown>
  const load = count(o.load, 1e6)
  const slots = count(o.slots, 1e6)
  const kvFreeBytes = count(o.kvFreeBytes, Number.MAX_SAFE_INTEGER)
  if (load === undefined || slots === undefined || kvFreeBytes === undefined) return undefined
  const step = o.stepLayerMs
  if (step !== undefined && !(typeof step === 'number' && Number.isFinite(step) && step > 0 && step < 1e6)) return undefined
  return { load, slots, kvFreeBytes, ...(step !== undefined ? { stepLayerMs: step } : {}) }
}

export function encodeLoad (load: NodeLoad): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(load))
}

/** The latest load of each peer, bounded (LOAD_MAX_PEERS) and expiring (LOAD_TTL_MS). */
export class LoadTable {
  private readonly entries = new Map<string, { load: NodeLoad, at: number }>()
  private readonly now: () => number

  constructor (now: () => number = Date.now) {
    this.now = now
  }

  set (peer: string, load: NodeLoad): void {
    this.entries.delete(peer) // re-inserted last: the map's order is oldest update first
    if (this.entries.size >= LOAD_MAX_PEERS) this.prune()
    if (this.entries.size >= LOAD_MAX_PEERS) this.entries.delete(this.entries.keys().next().value as string)
    this.entries.set(peer, { load, at: this.now() })
  }

  get (peer: string): NodeLoad | undefined {
    const e = this.entries.get(peer)
    return e !== undefined && this.now() - e.at < LOAD_TTL_MS ? e.load : undefined
  }

  get size (): number { return this.entries.size }

  prune (): void {
    const now = this.now()
    for (const [peer, e] of this.entries) if (now - e.at >= LOAD_TTL_MS) this.entries.delete(peer)
  }
}

/** The reads routing and the SDK client need from the swarm state (crdt's SwarmState has them). */
export interface RecordViews {
  nodes: () => ReadonlyMap<string, NodeRecord>
  online: () => string[]
  manifests: () => Array<{ id: string, data: unknown, publisher: string }>
  onChange: (listener: () => void) => () => void
}

/**
 * `views` with each record's capabilities extended by the live load known for it (`load`,
 * `slots`, `stepLayerMs`); `self` is this node's own load, read directly. Nothing is written.
 */
export function withLoad (views: RecordViews, table: LoadTable, self?: { peerId: string, load: () => NodeLoad | undefined }): RecordViews {
  return {
    nodes: () => {
      const out = new Map<string, NodeRecord>()
      for (const [peer, rec] of views.nodes()) {
        const l = self !== undefined && peer === self.peerId ? self.load() : table.get(peer)
        out.set(peer, l === undefined
          ? rec
          : { ...rec, capabilities: { ...rec.capabilities, load: l.load, slots: l.slots, ...(l.stepLayerMs !== undefined ? { stepLayerMs: l.stepLayerMs } : {}) } })
      }
      return out
    },
    online: () => views.online(),
    manifests: () => views.manifests(),
    onChange: (listener) => views.onChange(listener)
  }
}

/** This daemon's load from its stage service and step timer. */
export function ownLoad (service: Pick<MyceliumHost['services']['inference'], 'usage'>, stepTimer: StepTimer | undefined): NodeLoad {
  const { sessions, reservedBytes } = service.usage
  const kvFreeBytes = Math.max(0, INFERENCE_MAX_KV_BYTES - reservedBytes)
  // sessions the KV budget still takes, at the mean reservation of the open ones
  const byKv = sessions > 0 && reservedBytes > 0 ? sessions + Math.floor(kvFreeBytes / (reservedBytes / sessions)) : INFERENCE_MAX_SESSIONS
  const step = stepTimer?.decodeLayerMs
  return {
    load: sessions,
    slots: Math.max(sessions, Math.min(INFERENCE_MAX_SESSIONS, byKv)),
    kvFreeBytes,
    ...(sessions > 0 && step !== undefined && Number.isFinite(step) && step > 0 ? { stepLayerMs: Number(step.toPrecision(2)) } : {})
  }
}

export interface LoadBeacon {
  /** Peers' published loads. */
  table: LoadTable
  /** This node's load now (undefined: it serves nothing). */
  own: () => NodeLoad | undefined
  /** Messages published and received (accepted / rejected), for status. */
  stats: { published: number, accepted: number, rejected: number }
  stop: () => void
}

/**
 * Subscribes to the load topic and, when `serving()` says this node serves a model, publishes
 * its own load (see the header for the rate).
 */
export function startLoadBeacon (host: Pick<MyceliumHost, 'peerId' | 'services'>, swarm: string, own: () => NodeLoad | undefined, log: Logger): LoadBeacon {
  const pubsub = host.services.pubsub
  const topic = loadTopic(swarm)
  const table = new LoadTable()
  const stats = { published: 0, accepted: 0, rejected: 0 }
  const self = host.peerId.toString()
  pubsub.topicValidators.set(topic, async (_peer, message: Message) => {
    const load = message.type === 'signed' ? decodeLoad(message.data) : undefined
    if (load === undefined || message.type !== 'signed') { stats.rejected++; return TopicValidatorResult.Reject }
    return TopicValidatorResult.Accept
  })
  const onMessage = (evt: CustomEvent<Message>): void => {
    const m = evt.detail
    if (m.topic !== topic || m.type !== 'signed') return
    const from = m.from.toString()
    const load = decodeLoad(m.data)
    if (load === undefined || from === self) return
    stats.accepted++
    table.set(from, load)
  }
  pubsub.addEventListener('message', onMessage)
  pubsub.subscribe(topic)

  let last: NodeLoad | undefined
  let lastAt = 0
  const changed = (a: NodeLoad, b: NodeLoad | undefined): boolean => {
    if (b === undefined || a.load !== b.load || a.slots !== b.slots) return true
    if ((a.stepLayerMs === undefined) !== (b.stepLayerMs === undefined)) return true
    return a.stepLayerMs !== undefined && b.stepLayerMs !== undefined && Math.abs(a.stepLayerMs - b.stepLayerMs) > LOAD_STEP_REPUBLISH_FRACTION * b.stepLayerMs
  }
  const tick = (): void => {
    table.prune()
    const now = Date.now()
    const mine = own()
    if (mine === undefined) return
    if (now - lastAt < LOAD_PUBLISH_MIN_MS) return
    if (!changed(mine, last) && now - lastAt < LOAD_KEEPALIVE_MS) return
    last = mine
    lastAt = now
    pubsub.publish(topic, encodeLoad(mine)).then(() => { stats.published++ }, (err: Error) => {
      log.debug({ event: 'load-publish-failed', err: err.message }, 'could not publish the load')
    })
  }
  const timer = setInterval(tick, LOAD_CHECK_MS)
  return {
    table,
    own,
    stats,
    stop: () => {
      clearInterval(timer)
      pubsub.removeEventListener('message', onMessage)
      pubsub.topicValidators.delete(topic)
      if (pubsub.getTopics().includes(topic)) pubsub.unsubscribe(topic)
    }
  }
}
