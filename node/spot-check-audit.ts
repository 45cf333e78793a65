// One spot-check audit (issue 7), trusting no single party: every input and output the verifier
// replays is a frame signed by the peer that must have sent it (node/spot-check-trace.ts). Records
// come from both sides of each hop — the predecessor's SENT and the subject's RECEIVED frames for
// the inputs, the successor's RECEIVED and the subject's SENT frames for the outputs — so a
// neighbour that withholds or lies cannot frame the subject (a forged frame fails its signature)
// and the subject cannot hide behind a silent successor (its own signature binds its record).
//
// A last stage is checked on the tokens it signed (one by one, or all at once by its done receipt
// over the tokens and the AUDIT's sampling, spot-check-trace.ts receiptStart): greedy, each must be the verifier's argmax
// (spotCheckGreedy); seeded (temperature > 0), each must lie in its CDF interval at the coin the
// seed replays (spotCheckSampled), with the sampling taken from the AUDIT only when the subject's
// receipt binds it to those tokens — an owner that names another seed or temperature gets its
// request skipped (a bad signature), never the stage convicted. Every comparison uses the
// tolerance of the SUBJECT's dtype (its record; the node loads the verifier's copy in it).
import { sampleSpotChecks, spotCheck } from '../consensus/index.ts'
import { spotCheckGreedy } from '../consensus/spot-check.ts'
import { spotCheckSampled } from '../consensus/spot-check-sampled.ts'
import { ConsensusInputError } from '../consensus/errors.ts'
import { verifyPeer, type Equivocation } from '../consensus/signed-frames.ts'
import type { Shard, WeightDType } from '../engine/index.ts'
import type { AuditRequest, SpotTrace } from '../protocols/consensus/spot-check.ts'
import { receiptSampling, tokenMessage } from '../protocols/inference/frame-signature.ts'
import { equivocations, inputsOf, longer, receiptStart, signedSteps, signedTokens, SPOT_POSITIONS, tokenPositions, traceFromNeighbours, traceFromTokens } from './spot-check-trace.ts'

export interface AuditOutcome {
  /** The check's result; undefined when no signed trace was at hand (skipped). */
  result?: { checked: number[], passed: boolean, mismatches: Array<{ position: number }> }
  /** Proofs of equivocation found on the way (against whoever signed twice). */
  equivocations: Equivocation[]
  /** Recorded frames dropped because their signature did not verify. */
  badSignatures: number
  /** Why nothing was checked. */
  skipped?: string
}

export interface AuditDeps {
  /** FETCH `side` of `peer`'s record of the session (undefined: none, refused or unreachable). */
  fetch: (peer: string, side: 'inputs' | 'outputs') => Promise<SpotTrace | undefined>
  /** The verifier's own shard of [start, end), in `dtype` (the subject's) when given. */
  shardFor: (start: number, end: number, dtype?: WeightDType) => Promise<Shard>
  /** The dtype the subject's record says it serves (default: the verifier shard's own). */
  stageDtype?: WeightDType
  /** The model's layer count (a last stage ends there). */
  nLayers: number
}

/** Audits `a` (asked by `owner`, the round's owner: it signed the session's prompt). */
export async function auditStage (a: AuditRequest, owner: string, deps: AuditDeps): Promise<AuditOutcome> {
  const first = a.predecessor === ''
  const last = a.successor === ''
  const range = `${a.start}-${a.end}`
  const none = async (): Promise<undefined> => undefined
  // every record that can back the subject's inputs and outputs, fetched at once
  const [predSent, subjIn, subjOut, succIn] = await Promise.all([
    first ? none() : deps.fetch(a.predecessor, 'outputs').catch(none),
    deps.fetch(a.subject, 'inputs').catch(none),
    deps.fetch(a.subject, 'outputs').catch(none),
    last ? none() : deps.fetch(a.successor, 'inputs').catch(none)
  ])
  const fits = (t: SpotTrace | undefined, start: number, end: number): SpotTrace | undefined => t !== undefined && t.start === start && t.end === end ? t : undefined
  const session = a.sessionId
  const shard = async (): Promise<Shard> => await deps.shardFor(a.start, a.end, deps.stageDtype)
  let badSignatures = 0
  let skipped: string | undefined
  const found: Equivocation[] = []
  const verified = (t: SpotTrace | undefined, signer: (st: SpotTrace['steps'][number]) => string): SpotTrace['steps'] => {
    const v = signedSteps(t, session, signer)
    badSignatures += v.bad
    return v.steps
  }
  // outputs: frames the subject signed (its successor received them, it recorded sending them)
  const fromSucc = verified(succIn, () => a.subject)
  const fromSubj = verified(fits(subjOut, a.start, a.end), () => a.subject)
  const dim = subjIn?.dim ?? succIn?.dim ?? predSent?.dim ?? 0
  found.push(...equivocations(fromSucc, fromSubj, session, dim))
  const outputs = longer(fromSucc, fromSubj)
  let result: AuditOutcome['result']
  if (first) {
    // inputs: the owner's signed prompt and the last stage's signed tokens (the AUDIT's, or the subject's record)
    const known = a.start === 0 ? signedTokens(a, owner, a.last ?? '', fits(subjIn, a.start, a.end)) : undefined
    if (known?.received !== undefined) found.push(...equivocations(known.frames, known.received, session, dim))
    const trace = known === undefined ? undefined : traceFromTokens(known.tokens, outputs, dim)
    if (trace !== undefined) result = spotCheck(await shard(), { inputs: trace.inputs, fingerprints: trace.fingerprints }, sampleSpotChecks([session, range], trace.rows, SPOT_POSITIONS), undefined, {}, deps.stageDtype)
  } else {
    // inputs: frames the predecessor signed (it recorded sending them, the subject receiving them)
    const fromPred = verified(predSent, () => a.predecessor)
    const received = verified(fits(subjIn, a.start, a.end), () => a.predecessor)
    found.push(...equivocations(fromPred, received, session, dim))
    const inputs = longer(fromPred, received)
    if (!last) {
      const trace = traceFromNeighbours(inputs, outputs, { in: dim, out: dim })
      if (trace !== undefined) result = spotCheck(await shard(), { inputs: trace.inputs, fingerprints: trace.fingerprints }, sampleSpotChecks([session, range], trace.rows, SPOT_POSITIONS), undefined, {}, deps.stageDtype)
    } else if (a.end === deps.nLayers && a.greedy === true) {
      // the tokens the subject signed: from the AUDIT (relayed to the owner) or its own record
      const sampled = new Map<number, number>()
      for (const st of outputs) if (st.sampled) sampled.set(st.position, st.tokens[0])
      const tokens = a.tokens ?? []
      const promptLength = a.promptLength ?? 0
      for (let p = promptLength; p < tokens.length; p++) {
        if (verifyPeer(a.subject, tokenMessage(session, p - 1, tokens[p]), a.tokenSignatures?.[p - promptLength])) sampled.set(p, tokens[p])
        else if (a.tokenSignatures?.[p - promptLength] !== undefined) badSignatures++
      }
      // or every token its receipt binds (an AUDIT with a receipt carries no per-token signatures)
      if (a.receipt !== undefined) {
        const from = receiptStart(a, a.subject)
        if (from === undefined) badSignatures++
        else for (let p = from; p < tokens.length; p++) sampled.set(p, tokens[p])
      }
      const x = inputsOf(inputs, dim)
      if (x !== undefined && sampled.size > 0) {
        // the logits at position p chose the token at p + 1
        const expected = Array.from({ length: x.rows }, (_, p) => sampled.get(p + 1))
        result = spotCheckGreedy(await shard(), x.inputs, expected, tokenPositions([session, range], expected), deps.stageDtype)
      }
    } else if (a.end === deps.nLayers && a.sampling !== undefined && a.receipt !== undefined) {
      // seeded: the subject's receipt must bind the AUDIT's generated tokens to the AUDIT's sampling
      const tokens = a.tokens ?? []
      const from = receiptStart(a, a.subject) // the first receipted token; its coin is skipDraws
      const sampling = receiptSampling(a.sampling)
      if (from === undefined) {
        badSignatures++
        skipped = 'the sampling and tokens are not bound by the subject\'s receipt'
      } else {
        const x = inputsOf(inputs, dim)
        if (x !== undefined) {
          // the logits at position p drew the token at p + 1
          const expected = Array.from({ length: x.rows }, (_, p) => p + 1 >= from ? tokens[p + 1] : undefined)
          try {
            result = spotCheckSampled(await shard(), x.inputs, expected, tokenPositions([session, range], expected), { temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK, seed: sampling.seed, promptLength: from, skipDraws: sampling.skipDraws }, deps.stageDtype)
          } catch (err) {
            if (!(err instanceof ConsensusInputError)) throw err
            skipped = `not checkable: ${err.message}`
          }
        }
      }
    }
  }
  return { ...(result !== undefined ? { result } : { skipped: skipped ?? 'no signed record of the subject\'s inputs and outputs' }), equivocations: found, badSignatures }
}
