// Signed inference frames (issue 7): every Step carries its sender's signature (a stage's hidden
// states, the client's prompt), every Token the last stage's, and the last stage's done Token a
// receipt over the tokens it sampled in the session. Messages and verification live in
// consensus/signed-frames.ts (the ledger checks receipts and equivocation proofs with them);
// here: each frame's content hash and the signer over a libp2p Ed25519 private key.
//
// Signing uses node:crypto with a KeyObject built once from the key's seed (PKCS#8): measured
// 39 µs per signature against 88 µs for @libp2p/crypto's `key.sign` (which rebuilds a KeyObject
// from JWK on every call); both give the same bytes (Ed25519 is deterministic). Verification is
// ~60–140 µs (a loaded 2-core machine), so stages check a received frame only after its step's
// output has been passed on (off the per-hop path); see stage-service.ts.
import { createPrivateKey, sign, type KeyObject } from 'node:crypto'
import { batchRootMessage, batchSignature, batchTree, receiptContent, sha256, receiptSampling, signedMessage, tokensHash, verifyPeer, VerifiedRoots } from '../../consensus/signed-frames.ts'
import type { ReceiptSampling, SignedKind } from '../../consensus/signed-frames.ts'
import { HiddenCodec } from './inference.pb.js'

export { receiptContent, receiptSampling, signedMessage, tokensHash, verifyPeer, VerifiedRoots }
export type { ReceiptSampling }

const CODEC_NUMBER: Record<HiddenCodec, number> = { [HiddenCodec.F32]: 0, [HiddenCodec.F16]: 1, [HiddenCodec.INT8]: 2 }
const NUMBER_CODEC: readonly HiddenCodec[] = [HiddenCodec.F32, HiddenCodec.F16, HiddenCodec.INT8]

/** The wire codec's proto number (what a signature covers, and what FETCH answers carry). */
export function codecNumber (codec: HiddenCodec): number {
  return CODEC_NUMBER[codec] ?? 0xffffffff
}

/** The wire codec of a proto number (undefined: unknown). */
export function codecOf (n: number): HiddenCodec | undefined {
  return NUMBER_CODEC[n]
}

/** What a step frame's signature covers besides (session, position). */
export interface StepContent {
  /** First stage: the input token ids. */
  tokens?: ArrayLike<number>
  /** Other stages: encoded hidden states, their codec and shape [T, dim]. */
  hidden?: Uint8Array
  dtype: HiddenCodec
  shape: ArrayLike<number>
}

// a hidden-state step hashes no tokens: that hash is a constant
const NO_TOKENS_HASH = tokensHash([])

/** SHA-256 of a step's content: kind, codec, shape and the exact payload (token ids or encoded bytes). */
export function stepContentHash (step: StepContent): Uint8Array {
  const tokens = step.hidden === undefined ? (step.tokens ?? []) : []
  const head = new Uint8Array(12 + 4 * step.shape.length + 4 * tokens.length)
  const view = new DataView(head.buffer)
  view.setUint32(0, step.hidden === undefined ? 0 : 1, true)
  view.setUint32(4, codecNumber(step.dtype), true)
  view.setUint32(8, step.shape.length, true)
  let at = 12
  for (let i = 0; i < step.shape.length; i++, at += 4) view.setUint32(at, step.shape[i] >>> 0, true)
  // one buffer, one-shot hash: head ‖ tokensHash(tokens) ‖ hidden bytes (the same bytes as before)
  const hidden = step.hidden ?? new Uint8Array(0)
  const all = new Uint8Array(at + 32 + hidden.length)
  all.set(head.subarray(0, at), 0)
  all.set(tokens.length === 0 ? NO_TOKENS_HASH : tokensHash(tokens), at)
  all.set(hidden, at + 32)
  return sha256(all)
}

/** The message a step frame's signature signs. */
export function stepMessage (session: string, position: number, step: StepContent): Uint8Array {
  return signedMessage('step', session, position, stepContentHash(step))
}

/** The message a Token's signature signs: the token sampled from the logits at `position`. */
export function tokenMessage (session: string, position: number, token: number): Uint8Array {
  return signedMessage('token', session, position, tokensHash([token]))
}

/**
 * The message a receipt signs: the tokens a last stage sampled in `session`, the first from the
 * logits at `position`, and the sampling it drew them with (receiptContent; a round record carries
 * that content hash, consensus/ledger.ts checks the signature over it).
 */
export function receiptMessage (session: string, position: number, tokens: ArrayLike<number>, sampling: ReceiptSampling): Uint8Array {
  return signedMessage('receipt', session, position, receiptContent(tokens, sampling))
}

/** Signs frames as one peer. */
export interface FrameSigner {
  /** The signer's peer id text. */
  readonly peer: string
  sign: (message: Uint8Array) => Uint8Array<ArrayBuffer>
}

/** A libp2p Ed25519 private key (what `components.privateKey` is): `raw` = seed ‖ public key. */
export interface Ed25519PrivateKeyLike {
  type: string
  raw: Uint8Array
}

// DER prefix of an Ed25519 PKCS#8 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20])

/** A signer over `key` (undefined when it is not an Ed25519 key: frames then go unsigned). */
export function frameSigner (key: Ed25519PrivateKeyLike | undefined, peer: string): FrameSigner | undefined {
  if (key?.type !== 'Ed25519' || key.raw.length < 32) return undefined
  const object: KeyObject = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, key.raw.subarray(0, 32)]), format: 'der', type: 'pkcs8' })
  return { peer, sign: (message) => new Uint8Array(sign(null, message, object)) }
}

/**
 * Signs a stage's frames a batch at a time: every frame asked for while the current burst of
 * promise continuations runs (the sessions of one scheduler pass passing their outputs on) is a
 * leaf of one tree, whose root is signed once when the burst is over (process.nextTick runs after
 * the microtask queue drained: no event-loop turn is added). A lone frame is signed directly (the
 * plain 64-byte signature). consensus/signed-frames.ts describes the tree and the proof each
 * frame's signature field carries.
 */
export class BatchSigner {
  readonly peer: string
  /** Ed25519 signatures made, and the frames they covered. */
  signatures = 0
  frames = 0
  private readonly signer: FrameSigner
  private pending: Array<{ message: Uint8Array, resolve: (signature: Uint8Array<ArrayBuffer>) => void, reject: (err: Error) => void }> = []

  constructor (signer: FrameSigner) {
    this.signer = signer
    this.peer = signer.peer
  }

  /** `message`'s signature field (a batch signature with its proof when other frames shared the batch). */
  async sign (message: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    return await new Promise((resolve, reject) => {
      if (this.pending.length === 0) process.nextTick(() => { this.flush() })
      this.pending.push({ message, resolve, reject })
      // a full tree is signed at once (BATCH_MAX_LEAVES)
      if (this.pending.length >= BATCH_LEAVES) this.flush()
    })
  }

  /** A plain signature of `message` alone (receipts: one per session, never batched). */
  signAlone (message: Uint8Array): Uint8Array<ArrayBuffer> {
    this.signatures++
    return this.signer.sign(message)
  }

  private flush (): void {
    const batch = this.pending
    this.pending = []
    if (batch.length === 0) return
    try {
      if (batch.length === 1) { batch[0].resolve(this.signer.sign(batch[0].message)) } else {
        const { root, paths } = batchTree(batch.map((b) => b.message))
        const signature = this.signer.sign(batchRootMessage(batch.length, root))
        batch.forEach((b, i) => { b.resolve(batchSignature(signature, i, batch.length, paths[i])) })
      }
      this.signatures++
      this.frames += batch.length
    } catch (err) {
      // (flushed on process.nextTick: a throw here would take the node down) each frame's sender fails instead
      for (const b of batch) b.reject(new Error('signing failed', { cause: err }))
    }
  }
}

/** Most frames one batch signature covers (a path of at most 10 hashes; the wire allows 16). */
const BATCH_LEAVES = 1024

/** Whether `signature` is `peer`'s over a step / token frame. */
export function verifyStep (peer: string, session: string, position: number, step: StepContent, signature: Uint8Array | undefined): boolean {
  return verifyPeer(peer, stepMessage(session, position, step), signature)
}

export function verifyToken (peer: string, session: string, position: number, token: number, signature: Uint8Array | undefined): boolean {
  return verifyPeer(peer, tokenMessage(session, position, token), signature)
}

export type { SignedKind }
