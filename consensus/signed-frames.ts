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
// Ed25519 (a peer's libp2p identity key), checked with node:crypto against the public key the peer
// id embeds (identity multihash); no libp2p import, deterministic on every node.
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto'
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
  return new Uint8Array(createHash('sha256').update(b).digest())
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

/** Whether `signature` is `peer`'s Ed25519 signature of `message` (false for anything malformed). */
export function verifyPeer (peer: string, message: Uint8Array, signature: Uint8Array | undefined): boolean {
  if (signature?.length !== SIGNATURE_BYTES) return false
  const key = keyOf(peer)
  try {
    return key !== undefined && verify(null, message, key, signature)
  } catch {
    return false // reason: a malformed signature is simply not valid
  }
}

/**
 * `verifyPeer` on libuv's thread pool (node:crypto's callback form): the calling thread goes on
 * while the signature is checked (a stage checks every frame it receives this way).
 */
export async function verifyPeerAsync (peer: string, message: Uint8Array, signature: Uint8Array | undefined): Promise<boolean> {
  if (signature?.length !== SIGNATURE_BYTES) return false
  const key = keyOf(peer)
  if (key === undefined) return false
  return await new Promise<boolean>((resolve) => {
    try {
      verify(null, message, key, signature, (err, ok) => { resolve(err === null && ok) })
    } catch {
      resolve(false) // reason: a malformed signature is simply not valid
    }
  })
}

/** Two signed statements by one peer on one (kind, session, position) with different contents. */
export interface Equivocation {
  signer: string
  kind: SignedKind
  session: string
  position: number
  /** Content hashes and signatures (hex / base64), in code-unit order of the hashes. */
  contents: [string, string]
  signatures: [string, string]
}

/** Whether `e` is a valid proof of equivocation: distinct contents, both signatures valid. */
export function checkEquivocation (e: Equivocation): boolean {
  const [a, b] = e.contents
  if (a === b || !/^[0-9a-f]{64}$/.test(a) || !/^[0-9a-f]{64}$/.test(b)) return false
  return e.contents.every((c, i) => verifyPeer(e.signer, signedMessage(e.kind, e.session, e.position, Buffer.from(c, 'hex')), Buffer.from(e.signatures[i], 'base64')))
}
