// What a stage received and sent for one step, as signed frames (issue 7): the check of a received
// frame's signature, and the frames handed to the StageTap (node/spot-check.ts records them).
import type { VerifiedRoots } from '../../consensus/signed-frames.ts'
import { codecNumber, stepMessage, tokenMessage } from './frame-signature.ts'
import type { Step, Token } from './inference.pb.js'
import type { SentOutput, StageSession } from './stage-session.ts'

/**
 * A frame as a stage received or sent it, with its signature: a step's exact payload (token ids,
 * or encoded hidden states in `codec`), or a sampled token (`sampled`: `tokens` is the one token
 * the last stage sampled from the logits at position − 1, `signature` that Token's).
 */
export interface TapFrame { position: number, rows: number, hidden?: Uint8Array, codec: number, tokens?: number[], signature: Uint8Array, signer: string, sampled?: boolean }

/**
 * An optional observer of a served stage's steps (issue 7's spot-checks, node/spot-check.ts): called
 * after each engine step, once its output was passed on, with the frame the stage received and the
 * frame it sent (none on a last stage replaying known tokens). Observation only: the frames'
 * buffers are not reused by the stage, and an exception is ignored.
 */
export type StageTap = (step: { sessionId: string, start: number, end: number, dim: number, input: TapFrame, output?: TapFrame, prevPeer?: string, nextPeer?: string }) => void

/** Who signed what a stage ran: the previous stage, the client (its prompt) or the last stage (a fed-back token). */
export function signerOf (s: StageSession, fed: Token | undefined, self: string): string {
  return fed !== undefined ? (s.lastPeer ?? self) : s.shard.isFirst ? (s.client ?? '') : (s.prevPeer ?? '')
}

/**
 * Whether a received frame's signature holds: a stage's frames must be signed by it (a fed-back
 * token by the last stage); a client's prompt may be unsigned (a client without a key). Checked on
 * the thread pool, through `roots`: a frame whose batch root was verified already costs no
 * Ed25519 check (one per sender's batch).
 */
export async function receivedSignatureOk (s: StageSession, step: Step, fed: Token | undefined, signer: string, self: string, roots: VerifiedRoots): Promise<boolean> {
  if (signer === self || (s.shard.isFirst && fed === undefined && step.signature.length === 0)) return true
  return fed !== undefined
    ? await roots.verify(signer, tokenMessage(s.id, fed.position, fed.token), fed.signature)
    : await roots.verify(signer, stepMessage(s.id, step.position, s.shard.isFirst ? { tokens: step.tokens, dtype: step.dtype, shape: step.shape } : { hidden: step.hidden, dtype: step.dtype, shape: step.shape }), step.signature)
}

/** Hands `tap` what the stage received (`step`, or the fed-back token) and sent (`ran` rows) for one step; an exception is ignored. */
export function observe (tap: StageTap, s: StageSession, step: Step, fed: Token | undefined, signer: string, self: string, ran: { position: number, T: number }, sent: SentOutput | undefined): void {
  const shard = s.shard
  const rows = step.tokens.length > 0 ? step.tokens.length : (step.shape[0] ?? 0)
  const input: TapFrame = fed !== undefined
    ? { position: step.position, rows: 1, codec: codecNumber(step.dtype), tokens: [fed.token], signature: fed.signature, signer, sampled: true }
    : { position: step.position, rows, codec: codecNumber(step.dtype), ...(step.tokens.length > 0 ? { tokens: [...step.tokens] } : { hidden: step.hidden }), signature: step.signature, signer }
  let output: TapFrame | undefined
  if (sent?.token !== undefined) output = { position: sent.token.position + 1, rows: 1, codec: codecNumber(sent.codec), tokens: [sent.token.token], signature: sent.signature, signer: self, sampled: true }
  else if (sent?.hidden !== undefined) output = { position: ran.position, rows: ran.T, codec: codecNumber(sent.codec), hidden: sent.hidden, signature: sent.signature, signer: self }
  try {
    tap({ sessionId: s.id, start: shard.start, end: shard.end, dim: shard.config.dim, input, ...(output !== undefined ? { output } : {}), ...(s.prevPeer !== undefined ? { prevPeer: s.prevPeer } : {}), ...(s.nextPeer !== undefined ? { nextPeer: s.nextPeer } : {}) })
  } catch {
    // reason: an observer never breaks the stage
  }
}
