// Signed statements about a session (issue 7's attribution): what a peer sent at a position of a
// session (a step frame, a sampled token) and the receipt a last stage signs over the tokens it
// sampled. The signed message shows the session and the position in the clear and the content as
// a SHA-256, so two valid signatures by one peer on different contents at one (kind, session,
// position) prove equivocation to anyone, from the hashes alone:
//
//   message = "mycelium/frame/<kind>/1" ‖ 0x00 ‖ u16 len ‖ session (UTF-8) ‖ u32 position ‖ content (32 bytes)
//
// A receipt's content is receiptContent(tokens, sampling): the tokens' hash AND the sampling they
// were drawn with (temperature, top-p, top-k, seed, skipped draws), so a seeded last stage's
// tokens can be replayed against the seed it signed, never one an owner names.
//
// A stage signs a batch of frames at once (a Merkle root; below): each frame's signature field
// then carries its proof (sig ‖ index ‖ leaves ‖ path), and `verifyPeer` takes it as it comes.
//
// Ed25519 (a peer's libp2p identity key), checked with node:crypto against the public key the peer
// id embeds (identity multihash); no libp2p import, deterministic on every node.
import { createHash, createPublicKey, hash, verify, type KeyObject } from 'node:crypto'
import { base58btc } from 'multiformats/bases/base58'

export type SignedKind = 'step' | 'token' | 'receipt'

const encoder = new TextEncoder()
const DOMAINS: Record<SignedKind, Uint8Array> = {
  step: encoder.encode('mycelium/frame/step/1\u0000'),
  token: encoder.encode('mycelium/frame/token/1\u0000'),
  receipt: encoder.encode('mycelium/frame/receipt/1\u0000')
}
/** Longest session id a signed message carries (the inference protocol's id bound). */
export const SIGNED_MAX_SESSION = 256
export const SIGNATURE_BYTES = 64

/** The bytes a peer signs for `kind` at (session, position) with content hash `content`. */
export function signedMessage (kind: SignedKind, session: string, position: number, content: Uint8Array): Uint8Array {
  const domain = DOMAINS[kind]
  const id = encoder.encode(session.slice(0, SIGNED_MAX_SESSION))
  const out = new Uint8Array(domain.length + 2 + id.length + 4 + 32)
  const view = new DataView(out.buffer)
  out.set(domain, 0)
  let at = domain.length
  view.setUint16(at, id.length); at += 2
  out.set(id, at); at += id.length
  view.setUint32(at, position >>> 0); at += 4
  out.set(content.subarray(0, 32), at)
  return out
}

/** SHA-256 of a u32 list (little-endian), prefixed by its length: a token's or a receipt's content. */
export function tokensHash (tokens: ArrayLike<number>): Uint8Array {
  const b = new Uint8Array(4 + 4 * tokens.length)
  const view = new DataView(b.buffer)
  view.setUint32(0, tokens.length, true)
  for (let i = 0; i < tokens.length; i++) view.setUint32(4 + 4 * i, tokens[i] >>> 0, true)
  return sha256(b)
}

/**
 * The sampling a last stage drew its tokens with, as its receipt binds it (the session's
 * Open.sampling as the stage's sampler got it): temperature and top-p as the wire's float32,
 * top-p 0 read as 1 (off), the seed, and the PRNG draws a failover replay skipped.
 */
export interface ReceiptSampling {
  temperature: number
  topP: number
  topK: number
  seed: number
  skipDraws: number
}

/** Open.sampling (or an owner's request) → what a receipt binds: exactly the values the stage's sampler used. */
export function receiptSampling (p: { temperature?: number, topP?: number, topK?: number, seed?: number, skipDraws?: number } | undefined): ReceiptSampling {
  const topP = Math.fround(p?.topP ?? 1)
  return { temperature: Math.fround(p?.temperature ?? 0), topP: topP === 0 ? 1 : topP, topK: (p?.topK ?? 0) >>> 0, seed: p?.seed ?? 1, skipDraws: (p?.skipDraws ?? 0) >>> 0 }
}

const RECEIPT_CONTENT_DOMAIN = encoder.encode('mycelium/receipt-content/1\u0000')

/**
 * What a receipt's signature covers: SHA-256 of the sampled tokens' hash and the sampling they were
 * drawn with (f32 temperature, f32 top-p, u32 top-k, u64 seed, u32 skip draws, little-endian), so
 * nobody can hand a verifier another seed or temperature in the stage's name.
 */
export function receiptContent (tokens: ArrayLike<number>, sampling: ReceiptSampling): Uint8Array {
  const b = new Uint8Array(24)
  const view = new DataView(b.buffer)
  view.setFloat32(0, sampling.temperature, true)
  view.setFloat32(4, sampling.topP, true)
  view.setUint32(8, sampling.topK >>> 0, true)
  view.setBigUint64(12, BigInt(Math.max(0, Math.trunc(sampling.seed))) & 0xffffffffffffffffn, true)
  view.setUint32(20, sampling.skipDraws >>> 0, true)
  return new Uint8Array(createHash('sha256').update(RECEIPT_CONTENT_DOMAIN).update(tokensHash(tokens)).update(b).digest())
}

// DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it.
const SPKI_ED25519_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00])
// identity multihash (0x00, 36 bytes) of the protobuf PublicKey { Type: Ed25519 (1), Data: 32 bytes }
const ED25519_PEER_PREFIX = Uint8Array.from([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
const KEY_CACHE_MAX = 1024
const keys = new Map<string, KeyObject | null>()

/** The Ed25519 public key a peer id text embeds (undefined: not an Ed25519 peer id). */
export function peerPublicKey (peer: string): Uint8Array | undefined {
  if (peer.length === 0 || peer.length > 64) return undefined
  let bytes: Uint8Array
  try {
    bytes = base58btc.baseDecode(peer)
  } catch {
    return undefined // reason: not a base58 peer id
  }
  if (bytes.length !== ED25519_PEER_PREFIX.length + 32 || ED25519_PEER_PREFIX.some((b, i) => bytes[i] !== b)) return undefined
  return bytes.subarray(ED25519_PEER_PREFIX.length)
}

function keyOf (peer: string): KeyObject | undefined {
  let key = keys.get(peer)
  if (key === undefined) {
    const raw = peerPublicKey(peer)
    key = raw === undefined ? null : createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' })
    if (keys.size >= KEY_CACHE_MAX) keys.delete(keys.keys().next().value as string)
    keys.set(peer, key)
  }
  return key ?? undefined
}

// ---- Batch signatures (a Merkle tree over the frames one scheduler pass sends) ----
//
// A stage signs the frames of one batch at once: the leaves are the exact signed messages above
// (leaf = SHA-256(0x00 ‖ message)), inner nodes SHA-256(0x01 ‖ left ‖ right), the tree padded to
// 2^depth leaves with 32 zero bytes (no message hashes to that); the peer signs
//
//   root message = "mycelium/frame/batch/1" ‖ 0x00 ‖ u32 leaves ‖ root (32 bytes)
//
// and each frame's signature field carries its own proof, so every place that carries a
// signature (a Step, a Token, a recorded frame, an AUDIT, an equivocation record) carries the
// proof with it and any one frame stays verifiable alone:
//
//   signature = sig (64)                                            a batch of one: sig over the message itself
//             | sig (64) ‖ u32 index ‖ u32 leaves ‖ path (32 × depth)   2 ≤ leaves ≤ 2^16, index < leaves,
//                                                                     depth = ⌈log2 leaves⌉ ≤ 16 (bottom-up siblings)
// Big-endian integers. The batch domain differs from every frame kind's, so a root signature is
// never a frame signature nor the reverse.

const BATCH_DOMAIN = encoder.encode('mycelium/frame/batch/1\u0000')
/** Most hashes a batch proof's path may hold (2^16 leaves). */
export const BATCH_MAX_DEPTH = 16
export const BATCH_MAX_LEAVES = 1 << BATCH_MAX_DEPTH
/** Longest signature field a frame may carry (a batch signature with a full path). */
export const BATCH_SIGNATURE_MAX_BYTES = SIGNATURE_BYTES + 8 + 32 * BATCH_MAX_DEPTH
const EMPTY_LEAF = new Uint8Array(32)

/** SHA-256 in one call (node:crypto's one-shot `hash`: no Hash object per call; a tree hashes a lot of 65-byte inputs). */
export function sha256 (data: Uint8Array): Uint8Array {
  const b = hash('sha256', data, 'buffer')
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
}

/** A leaf of a batch tree: SHA-256(0x00 ‖ message). */
export function batchLeaf (message: Uint8Array): Uint8Array {
  const b = new Uint8Array(1 + message.length)
  b.set(message, 1)
  return sha256(b)
}
const NODE_INPUT = new Uint8Array(65)
NODE_INPUT[0] = 1
function node (left: Uint8Array, right: Uint8Array): Uint8Array {
  NODE_INPUT.set(left.subarray(0, 32), 1)
  NODE_INPUT.set(right.subarray(0, 32), 33)
  return sha256(NODE_INPUT)
}

/** ⌈log2 n⌉ (n ≥ 1). */
function depthOf (n: number): number {
  let d = 0
  while ((1 << d) < n) d++
  return d
}

/** What a peer signs for a batch of `leaves` frames whose tree has root `root`. */
export function batchRootMessage (leaves: number, root: Uint8Array): Uint8Array {
  const out = new Uint8Array(BATCH_DOMAIN.length + 4 + 32)
  out.set(BATCH_DOMAIN, 0)
  new DataView(out.buffer).setUint32(BATCH_DOMAIN.length, leaves >>> 0)
  out.set(root.subarray(0, 32), BATCH_DOMAIN.length + 4)
  return out
}

/** A batch tree over `messages` (≥ 1): its root and each leaf's path (bottom-up siblings). */
export function batchTree (messages: readonly Uint8Array[]): { root: Uint8Array, paths: Uint8Array[][] } {
  const depth = depthOf(messages.length)
  let level: Uint8Array[] = messages.map(batchLeaf)
  while (level.length < (1 << depth)) level.push(EMPTY_LEAF)
  const paths: Uint8Array[][] = messages.map(() => [])
  for (let d = 0; d < depth; d++) {
    for (let i = 0; i < messages.length; i++) paths[i].push(level[(i >>> d) ^ 1])
    const up: Uint8Array[] = []
    for (let j = 0; j < level.length; j += 2) up.push(node(level[j], level[j + 1]))
    level = up
  }
  return { root: level[0], paths }
}

/** The signature field of leaf `index` of a batch of `leaves` signed with `signature` (a batch of one: the signature alone). */
export function batchSignature (signature: Uint8Array, index: number, leaves: number, path: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (leaves <= 1) return Uint8Array.from(signature)
  const out = new Uint8Array(SIGNATURE_BYTES + 8 + 32 * path.length)
  out.set(signature.subarray(0, SIGNATURE_BYTES), 0)
  const view = new DataView(out.buffer)
  view.setUint32(SIGNATURE_BYTES, index >>> 0)
  view.setUint32(SIGNATURE_BYTES + 4, leaves >>> 0)
  path.forEach((h, i) => { out.set(h.subarray(0, 32), SIGNATURE_BYTES + 8 + 32 * i) })
  return out
}

/**
 * What a signature field proves about `message`: the bytes the Ed25519 signature must cover (the
 * message itself, or the root message its path leads to) and that signature; undefined when the
 * field is malformed (a wrong length, leaves out of range, an index past the leaves, a path of
 * another length than the tree's depth).
 */
export function signedBy (message: Uint8Array, signature: Uint8Array | undefined): { signed: Uint8Array, signature: Uint8Array, leaves: number } | undefined {
  if (signature === undefined) return undefined
  if (signature.length === SIGNATURE_BYTES) return { signed: message, signature, leaves: 1 }
  if (signature.length < SIGNATURE_BYTES + 8 || signature.length > BATCH_SIGNATURE_MAX_BYTES || (signature.length - SIGNATURE_BYTES - 8) % 32 !== 0) return undefined
  const view = new DataView(signature.buffer, signature.byteOffset, signature.byteLength)
  const index = view.getUint32(SIGNATURE_BYTES)
  const leaves = view.getUint32(SIGNATURE_BYTES + 4)
  const depth = (signature.length - SIGNATURE_BYTES - 8) / 32
  if (leaves < 2 || leaves > BATCH_MAX_LEAVES || index >= leaves || depth !== depthOf(leaves)) return undefined
  let h = batchLeaf(message)
  for (let d = 0; d < depth; d++) {
    const sibling = signature.subarray(SIGNATURE_BYTES + 8 + 32 * d, SIGNATURE_BYTES + 40 + 32 * d)
    h = ((index >>> d) & 1) === 0 ? node(h, sibling) : node(sibling, h)
  }
  return { signed: batchRootMessage(leaves, h), signature: signature.subarray(0, SIGNATURE_BYTES), leaves }
}

/**
 * Whether `signature` is `peer`'s Ed25519 signature of `message`, directly or through a batch
 * proof (signedBy); false for anything malformed.
 */
export function verifyPeer (peer: string, message: Uint8Array, signature: Uint8Array | undefined): boolean {
  const s = signedBy(message, signature)
  const key = s === undefined ? undefined : keyOf(peer)
  try {
    return s !== undefined && key !== undefined && verify(null, s.signed, key, s.signature)
  } catch {
    return false // reason: a malformed signature is simply not valid
  }
}

/**
 * The batch roots a receiver has verified (bounded, least recently used first out): one Ed25519
 * check per (signer, batch) however many of the batch's frames arrive; checks in flight are shared.
 * Only valid roots stay (a failed check is forgotten), so a peer can fill it only with batches it
 * really signed, and never past `max` entries.
 */
export class VerifiedRoots {
  /** Ed25519 verifications actually run (the rest were answered from the cache). */
  verifications = 0
  hits = 0
  private readonly max: number
  private readonly roots = new Map<string, Promise<boolean>>()

  constructor (max = 1024) {
    this.max = Math.max(1, max)
  }

  get size (): number { return this.roots.size }

  /** `verifyPeerAsync` through the cache: a batch root once verified for `peer` is believed. */
  async verify (peer: string, message: Uint8Array, signature: Uint8Array | undefined): Promise<boolean> {
    const s = signedBy(message, signature)
    if (s === undefined) return false
    if (s.leaves === 1) { this.verifications++; return await verifySigned(peer, s.signed, s.signature) }
    // the signature bytes are part of the key: a frame is believed only with the very signature that was verified
    // (what a receiver records must verify for anyone)
    const key = `${peer}/${Buffer.from(s.signed).toString('base64')}/${Buffer.from(s.signature).toString('base64')}`
    let check = this.roots.get(key)
    if (check !== undefined) {
      this.hits++
      this.roots.delete(key)
      this.roots.set(key, check) // most recently used
      return await check
    }
    this.verifications++
    check = verifySigned(peer, s.signed, s.signature)
    if (this.roots.size >= this.max) this.roots.delete(this.roots.keys().next().value as string)
    this.roots.set(key, check)
    const ok = await check
    if (!ok && this.roots.get(key) === check) this.roots.delete(key)
    return ok
  }
}

async function verifySigned (peer: string, signed: Uint8Array, signature: Uint8Array): Promise<boolean> {
  const key = keyOf(peer)
  if (key === undefined) return false
  return await new Promise<boolean>((resolve) => {
    try {
      verify(null, signed, key, signature, (err, ok) => { resolve(err === null && ok) })
    } catch {
      resolve(false) // reason: a malformed signature is simply not valid
    }
  })
}

/**
 * `verifyPeer` on libuv's thread pool (node:crypto's callback form): the calling thread goes on
 * while the signature is checked (a stage checks every frame it receives this way, through its
 * VerifiedRoots).
 */
export async function verifyPeerAsync (peer: string, message: Uint8Array, signature: Uint8Array | undefined): Promise<boolean> {
  const s = signedBy(message, signature)
  return s !== undefined && await verifySigned(peer, s.signed, s.signature)
}

/** Two signed statements by one peer on one (kind, session, position) with different contents. */
export interface Equivocation {
  signer: string
  kind: SignedKind
  session: string
  position: number
  /** Content hashes and signature fields (hex / base64; a batch signature with its proof), in code-unit order of the hashes. */
  contents: [string, string]
  signatures: [string, string]
}

/** Whether `e` is a valid proof of equivocation: distinct contents, both signatures valid (each may be a batch signature with its path). */
export function checkEquivocation (e: Equivocation): boolean {
  const [a, b] = e.contents
  if (a === b || !/^[0-9a-f]{64}$/.test(a) || !/^[0-9a-f]{64}$/.test(b)) return false
  return e.contents.every((c, i) => verifyPeer(e.signer, signedMessage(e.kind, e.session, e.position, Buffer.from(c, 'hex')), Buffer.from(e.signatures[i], 'base64')))
}
