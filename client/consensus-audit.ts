// Spot-check requests (issue 7). After a consensus round its owner audits every stage of every
// answering chain — a first stage with the tokens it knows as inputs, a last stage with the tokens
// it signed as outputs: greedy, or seeded (temperature > 0) with the chain's sampling (the round's
// temperature / top-p / top-k, the chain's seed) and the stage's receipt that binds them — as it
// did middle stages before: every middle stage of every
// answering chain (a stage with a predecessor and a successor) is audited by SPOT_VERIFIERS
// verifiers — admitted for the model, not excluded, online, holding layers of the same model, outside the chain,
// not the owner — chosen deterministically by SHA-256(round, session, subject, verifier). Each
// verifier fetches the subject's inputs from the predecessor and its outputs from the successor
// over /mycelium/<swarm>/spot-check/1.0.0, re-executes and writes its evidence record
// (node/spot-check.ts); the ledger excludes the subject once two confirm a failure. A client with
// an `auditRate` (the daemon's API: SPOT_AUDIT_RATE) also audits that fraction of its plain
// requests, chosen by the session id's hash (`auditSampled`), when the session was not repaired —
// every stage, like a round's chain (`auditPlainRequest`). A first or last stage's AUDIT carries
// the last stage's receipt instead of its per-token signatures when there is one (it binds every
// token: the AUDIT stays ~3 bytes a token); else the signed prefix that fits one AUDIT.
import type { AbortOptions, Stream } from '@libp2p/interface'
import { compareText, digestFields, toHex } from '../consensus/digest.ts'
import { admittedFor, type ReputationState } from '../consensus/index.ts'
import { requestAudit, spotCheckProtocol } from '../protocols/index.ts'
import { AUDIT_MAX_TOKENS, auditTokensThatFit } from '../protocols/consensus/spot-check.ts'
import type { ChainHop, FrameSigner } from '../protocols/index.ts'
import { stepMessage } from '../protocols/inference/frame-signature.ts'
import { HiddenCodec } from '../protocols/inference/inference.pb.js'
import type { SwarmReader } from './route.ts'

/** Verifiers asked per audited stage (two must confirm a failure). */
export const SPOT_VERIFIERS = 3

/** Whether a plain request's session is audited: SHA-256 of its id below `rate` (a fraction). */
export function auditSampled (sessionId: string, rate: number): boolean {
  if (!(rate > 0)) return false
  const h = digestFields(['mycelium/consensus/audit-sample/1', sessionId])
  return ((h[0] << 24 >>> 0) + (h[1] << 16) + (h[2] << 8) + h[3]) / 2 ** 32 < rate
}

export interface AuditOutcome { subject: string, session: string, verifier: string, status: string }

/** A plain request's session as its client saw it: one session (not repaired), its tokens with the last stage's signatures, and its done receipt when it came. */
export interface PlainSession {
  sessionId: string
  chain: ChainHop[]
  prompt: number[]
  tokens: number[]
  signatures: Array<Uint8Array<ArrayBuffer>>
  receipt?: { session: string, first: number, signature: Uint8Array }
  /** The session's Open.sampling (temperature 0: greedy). */
  sampling: { temperature: number, topP: number, topK: number, seed: number }
}

/**
 * Audits a plain request (sampled by `auditSampled`) the way a consensus round audits each of its
 * chains: its first stage on the owner's signed prompt, its middle stages, and its last stage on
 * the tokens it signed — greedy, or seeded with the session's sampling and receipt.
 */
export async function auditPlainRequest (options: Omit<Parameters<typeof requestAudits>[0], 'round' | 'chains' | 'prompt' | 'greedy' | 'sampling'> & { session: PlainSession }): Promise<AuditOutcome[]> {
  const { session: s, ...rest } = options
  return await requestAudits({
    ...rest,
    round: `audit:${s.sessionId}`,
    chains: [{ chain: s.chain, sessionId: s.sessionId, tokens: s.tokens, signatures: s.signatures, seed: s.sampling.seed, ...(s.receipt !== undefined ? { receipt: s.receipt } : {}) }],
    prompt: s.prompt,
    greedy: s.sampling.temperature === 0,
    sampling: s.sampling
  })
}

export async function requestAudits (options: {
  round: string
  swarm: string
  model: string
  self: string
  state: SwarmReader
  online: () => string[]
  reputation: ReputationState
  /** Each chain's session, and its generated tokens (with `prompt`: first stages are audited too). */
  chains: Array<{ chain: ChainHop[], sessionId?: string, tokens?: number[], signatures?: Array<Uint8Array<ArrayBuffer>>, seed?: number, receipt?: { session: string, first: number, signature: Uint8Array } }>
  /** The request's prompt tokens. */
  prompt?: number[]
  /** The request sampled greedily: last stages are audited too (their argmax against the tokens). */
  greedy?: boolean
  /**
   * The request's sampling when it was seeded (temperature > 0): last stages are audited against
   * the coins of their chain's `seed`, when the chain carries its last stage's `receipt`.
   */
  sampling?: { temperature: number, topP: number, topK: number }
  /**
   * The owner's signer: its prompt signature (recomputed: Ed25519 is deterministic) goes with the
   * tokens, and each chain's `signatures` (the last stage's, per generated token), so verifiers
   * trust no one's say-so about a first or last stage's inputs and outputs.
   */
  signer?: FrameSigner
  openStream: (peer: string, protocol: string, options: AbortOptions) => Promise<Stream>
  signal?: AbortSignal
}): Promise<AuditOutcome[]> {
  const online = new Set(options.online())
  // verifiers hold the model: its layers, or the whole model for judging (a judge-only node's `judgeModel`)
  const holders = [...options.state.nodes()].filter(([id, r]) => id !== options.self && online.has(id) && (r.layers.some((l) => l.model === options.model) || r.capabilities.judgeModel === options.model)).map(([id]) => id)
    .filter((id) => { const rep = options.reputation.nodes.get(id); return admittedFor(rep, options.model) && rep?.excluded !== true }) // the ledger counts a verifier's record only for a model it is admitted for
  const out: AuditOutcome[] = []
  const jobs: Array<Promise<void>> = []
  for (const { chain, sessionId, tokens, signatures, seed, receipt } of options.chains) {
    if (sessionId === undefined || chain.length < 2) continue
    const peers = chain.map((h) => String(h.peer))
    const promptLength = options.prompt?.length ?? 0
    // the last stage's receipt, with the sampling it binds (the session's own: no skipped draws):
    // it stands for every generated token (a seeded last stage is replayed from it), so the AUDIT
    // carries no per-token signatures (each up to 584 bytes with a batch signature's proof)
    const t = options.greedy === true ? 0 : options.sampling?.temperature ?? 0
    const bound = (options.greedy === true || t > 0) && options.sampling !== undefined && seed !== undefined && receipt !== undefined && receipt.session === sessionId && receipt.signature.length === 64 && receipt.first + 1 === promptLength
      ? { sampling: { temperature: t, topP: options.sampling.topP, topK: options.sampling.topK, seed, skipDraws: 0 }, receipt: { signature: Uint8Array.from(receipt.signature), first: receipt.first } }
      : undefined
    // without one, the signed tokens that fit one AUDIT (a prefix: the first and a greedy last stage are checked on it)
    const fit = bound === undefined && tokens !== undefined ? auditTokensThatFit(promptLength, (signatures ?? []).slice(0, tokens.length)) : tokens?.length ?? 0
    const known = options.prompt !== undefined && tokens !== undefined && options.prompt.length > 0 ? [...options.prompt, ...tokens.slice(0, Math.min(fit, AUDIT_MAX_TOKENS - promptLength))] : undefined
    const complete = known !== undefined && known.length === promptLength + (tokens?.length ?? 0)
    const proofs = known === undefined
      ? {}
      : {
          ...(options.signer !== undefined ? { promptSignature: options.signer.sign(stepMessage(sessionId, 0, { tokens: known.slice(0, promptLength), dtype: HiddenCodec.F32, shape: [] })) } : {}),
          ...(signatures !== undefined && bound === undefined ? { tokenSignatures: signatures.slice(0, known.length - promptLength) } : {}),
          ...(complete ? bound : {}),
          last: peers[peers.length - 1]
        }
    const seeded = options.greedy !== true && t > 0 && complete ? bound : undefined
    for (let i = 0; i < chain.length; i++) {
      const first = i === 0
      const last = i === chain.length - 1
      // a first stage needs the tokens; a last stage the tokens, at least one generated, and greedy sampling
      if ((first || last) && known === undefined) continue
      if (last && ((tokens?.length ?? 0) === 0 || (options.greedy !== true && seeded === undefined))) continue
      const subject = peers[i]
      const rank = (v: string): string => toHex(digestFields(['mycelium/consensus/audit/1', options.round, sessionId, subject, v]))
      const verifiers = holders.filter((v) => !peers.includes(v)).map((v) => ({ v, k: rank(v) })).sort((a, b) => compareText(a.k, b.k)).slice(0, SPOT_VERIFIERS).map((x) => x.v)
      for (const verifier of verifiers) {
        jobs.push((async () => {
          let status: string
          try {
            const signal = AbortSignal.any([AbortSignal.timeout(10_000), ...(options.signal !== undefined ? [options.signal] : [])])
            const stream = await options.openStream(verifier, spotCheckProtocol(options.swarm), { signal })
            status = await requestAudit(stream, { sessionId, subject, start: chain[i].start, end: chain[i].end, predecessor: first ? '' : peers[i - 1], successor: last ? '' : peers[i + 1], model: options.model, ...(first || last ? { tokens: known, promptLength, greedy: options.greedy === true, ...proofs } : {}) }, { signal })
          } catch (err) {
            status = `error: ${(err as Error).message}`
          }
          out.push({ subject, session: sessionId, verifier, status })
        })())
      }
    }
  }
  await Promise.all(jobs)
  return out.sort((a, b) => compareText(a.subject, b.subject) || compareText(a.verifier, b.verifier))
}
