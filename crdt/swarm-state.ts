// SwarmState: one Yjs document per swarm, written only through signed, authorized envelopes.
// This node's writes go into its own namespace and come out as envelopes (onEnvelope) for the
// network layer to publish; everything received goes through SwarmReplica's checks.
import * as Y from 'yjs'
import { authorizeUpdate } from './authorize.ts'
import { ENVELOPE_OVERHEAD_BYTES, MAX_UPDATE_BYTES, MAX_WRITER_BYTES, PRESENCE_TTL_MS } from './constants.ts'
import { sealBeacon } from './beacon.ts'
import { envelopeHash, sealEnvelope } from './envelope.ts'
import { CorruptStoreError, InvalidRecordError, WriterQuotaError } from './errors.ts'
import { LOCAL, SwarmReplica } from './swarm-replica.ts'
import { writerIdentity } from './writer-identity.ts'
import type { Beacon, Envelope, EnvelopeSigner, JsonValue, NodeRecord, SwarmStateInit, WriteOptions } from './index.ts'

export class SwarmState extends SwarmReplica {
  private readonly signer: EnvelopeSigner
  private readonly envelopeListeners = new Set<(envelope: Envelope) => void>()
  private readonly beaconListeners = new Set<(beacon: Beacon) => void>()
  private signing: Promise<unknown> = Promise.resolve()
  private writable = true
  private resume: () => void = () => {}
  private writableGate: Promise<void> = Promise.resolve()

  constructor (init: SwarmStateInit) {
    const identity = writerIdentity(init.signer.publicKey)
    if (identity === undefined) throw new InvalidRecordError('signer public key is not a 32-byte Ed25519 key')
    super(init.swarm, identity, init.clock ?? Date.now, init.presenceTtlMs ?? PRESENCE_TTL_MS, init.store)
    this.signer = init.signer
    this.doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin === LOCAL) this.sealLocal(update)
    })
  }

  // --- local writes (own namespace only) ---

  // Every write resolves to the signed envelope. While writes are paused (pauseWrites) it waits;
  // `options.signal` abandons the wait.

  setNode (record: NodeRecord, options: WriteOptions = {}): Promise<Envelope> {
    return this.write('node', this.checkNode(record), options)
  }

  /**
   * Signs a presence beacon (not an envelope: nothing enters the log or the document), takes it
   * into our own presence table and hands it to `onBeacon` listeners. It carries our chain head
   * once every pending own envelope is signed, so peers that see it learn they are behind.
   * Beacons do not wait for paused writes: presence says nothing about the chain's history.
   */
  async heartbeat (options: WriteOptions = {}): Promise<Beacon> {
    options.signal?.throwIfAborted()
    await this.signing
    const log = this.ownLog()
    // Strictly increasing, even for two beats in one millisecond (readers keep only newer ones).
    const at = Math.max(this.now(), (this.beacons.get(this.peerId)?.beacon.at ?? 0) + 1)
    const beacon = await sealBeacon(this.swarm, this.signer, at, log.seq, log.headHash)
    options.signal?.throwIfAborted()
    this.receiveBeacon(beacon)
    for (const listener of this.beaconListeners) listener(beacon)
    return beacon
  }

  claimReputation (subject: string, score: number, round?: string, options: WriteOptions = {}): Promise<Envelope> {
    return this.write(`rep/${subject}`, this.checkClaim({ subject, score, at: this.now(), ...(round === undefined ? {} : { round }) }), options)
  }

  recordRound (id: string, data: JsonValue, options: WriteOptions = {}): Promise<Envelope> {
    return this.write(`round/${id}`, this.checkJson({ id, data }), options)
  }

  putManifest (id: string, data: JsonValue, options: WriteOptions = {}): Promise<Envelope> {
    return this.write(`manifest/${id}`, this.checkJson({ id, data }), options)
  }

  /** Removes one of this node's records (e.g. a manifest it no longer serves). */
  remove (key: string, options: WriteOptions = {}): Promise<Envelope> {
    return this.transactLocal((map) => map.delete(key), options)
  }

  private write (key: string, value: JsonValue, options: WriteOptions): Promise<Envelope> {
    return this.transactLocal((map) => map.set(key, value), options)
  }

  private async transactLocal (fn: (map: Y.Map<JsonValue>) => void, options: WriteOptions): Promise<Envelope> {
    while (!this.writable) {
      options.signal?.throwIfAborted()
      await new Promise<void>((resolve, reject) => {
        const abort = (): void => { reject(options.signal?.reason) }
        options.signal?.addEventListener('abort', abort, { once: true })
        this.writableGate.then(() => {
          options.signal?.removeEventListener('abort', abort)
          resolve()
        }, reject)
      })
    }
    const before = this.ownLog().seq
    // Peers refuse an envelope past the quota, and the transaction cannot be undone once made:
    // stop while the largest possible update still fits.
    if (this.ownLog().envelopeBytes + MAX_UPDATE_BYTES + ENVELOPE_OVERHEAD_BYTES > MAX_WRITER_BYTES) {
      throw new WriterQuotaError(`this node's envelopes take ${this.ownLog().envelopeBytes} of its ${MAX_WRITER_BYTES}-byte quota`)
    }
    this.doc.transact(() => fn(this.doc.getMap<JsonValue>(this.identity.namespace)), LOCAL)
    const seq = this.ownLog().seq
    if (seq === before) throw new InvalidRecordError('the write changed nothing')
    await this.signing
    const envelope = this.ownLog().envelopeAt(seq)
    if (envelope === undefined) throw new InvalidRecordError('own envelope was not signed')
    return envelope
  }

  /** Turns a local transaction's update into the next envelope of our chain (signed async). */
  private sealLocal (update: Uint8Array): void {
    const log = this.ownLog()
    const check = authorizeUpdate(update, { clientId: log.identity.clientId, namespace: log.identity.namespace, clock: log.clock })
    if (!check.ok) throw new InvalidRecordError(`own update breaks the acceptance rules: ${check.detail}`)
    const seq = log.seq + 1
    const prev = log.headHash
    log.append(update, envelopeHash(this.swarm, log.identity.publicKey, seq, prev, update), check.clockAfter)
    this.signing = this.signing.then(async () => {
      const { envelope } = await sealEnvelope(this.swarm, this.signer, seq, prev, update)
      log.setSignature(seq, envelope.signature)
      // On disk before anyone sees it: a node that crashed after publishing seq k but before
      // storing it would sign a different seq k after the restart, and be proven an equivocator.
      this.store?.append([envelope])
      await this.store?.flush()
      for (const listener of this.envelopeListeners) listener(envelope)
    })
  }

  /** Called with every envelope this node signs, for the network layer to publish. */
  onEnvelope (listener: (envelope: Envelope) => void): () => void {
    this.envelopeListeners.add(listener)
    return () => this.envelopeListeners.delete(listener)
  }

  /** Called with every beacon this node signs, for the network layer to publish. */
  onBeacon (listener: (beacon: Beacon) => void): () => void {
    this.beaconListeners.add(listener)
    return () => this.beaconListeners.delete(listener)
  }

  /**
   * Holds local writes until `resumeWrites()`: used after a corrupt store, so that the node does
   * not restart its own chain at seq 1 (equivocating) before peers gave its envelopes back.
   */
  pauseWrites (): void {
    if (!this.writable) return
    this.writable = false
    this.writableGate = new Promise((resolve) => { this.resume = resolve })
  }

  resumeWrites (): void {
    this.writable = true
    this.resume()
  }

  get writesPaused (): boolean {
    return !this.writable
  }

  async flush (): Promise<void> {
    await this.signing
    await this.store?.flush()
  }

  async close (): Promise<void> {
    await this.flush()
    await this.store?.close()
  }
}

/** Creates a SwarmState and loads its store; a corrupt store is reported, set aside, and the state starts empty. */
export async function openSwarmState (init: SwarmStateInit): Promise<SwarmState> {
  const { store, ...rest } = init
  let state = new SwarmState(rest)
  if (store === undefined) return state
  try {
    const envelopes = await store.load()
    const proofs = await store.loadForkProofs()
    state.replay(envelopes)
    for (const proof of proofs) {
      if (!state.receiveForkProof(proof)) throw new CorruptStoreError('a stored fork proof does not hold')
    }
    state.loadReport = envelopes.length === 0 ? { status: 'empty' } : { status: 'loaded', envelopes: envelopes.length, writers: state.writers().length }
  } catch (err) {
    if (!(err instanceof CorruptStoreError)) throw err
    // Never half-loaded: drop everything replayed so far and rebuild from peers.
    const movedTo = await store.reset()
    state = new SwarmState(rest)
    state.loadReport = { status: 'corrupt', reason: err.message, movedTo }
    state.pauseWrites()
  }
  state.attachStore(store)
  return state
}
