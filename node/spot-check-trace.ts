// What a spot-check verifier may believe (issue 7): recorded frames count only with a valid
// signature by the peer that must have sent them — a subject's inputs signed by its predecessor
// (or, on a first stage, the owner's prompt and the last stage's fed-back tokens), its outputs
// signed by the subject itself. Two validly signed, different frames by one signer at one
// (session, position) are equivocation (consensus/signed-frames.ts checks the proof).
// Pure functions over FETCH answers (SpotTrace) and AUDIT requests; node/spot-check.ts runs them.
import { decodeHidden } from '../engine/codecs.ts'
import type { StageInput } from '../engine/index.ts'
import { fingerprint, sampleSpotChecks } from '../consensus/index.ts'
import { signedMessage, tokensHash, verifyPeer, type Equivocation, type SignedKind } from '../consensus/signed-frames.ts'
import { codecOf, receiptMessage, receiptSampling, stepContentHash, stepMessage, tokenMessage } from '../protocols/inference/frame-signature.ts'
import { HiddenCodec } from '../protocols/inference/inference.pb.js'
import { engineCodec } from '../protocols/inference/wire.ts'
import type { AuditRequest, SpotStep, SpotTrace } from '../protocols/consensus/spot-check.ts'

/** Positions checked per audit. */
export const SPOT_POSITIONS = 20

/** What a recorded frame's signature signs: kind, position and content hash. */
export function signedOf (step: SpotStep, dim: number): { kind: SignedKind, position: number, content: Uint8Array } {
  if (step.sampled) return { kind: 'token', position: step.position - 1, content: tokensHash(step.tokens.slice(0, 1)) }
  // an unknown codec hashes as F32 with a marker shape no honest frame has: its signature cannot verify
  const dtype = codecOf(step.codec) ?? HiddenCodec.F32
  const shape = codecOf(step.codec) === undefined ? [0xffffffff] : step.tokens.length > 0 ? [] : [step.rows, dim]
  const content = step.tokens.length > 0
    ? stepContentHash({ tokens: step.tokens, dtype, shape })
    : stepContentHash({ hidden: step.hidden, dtype, shape })
  return { kind: 'step', position: step.position, content }
}

/** Whether a recorded frame carries a valid signature by `signer` (and names it). */
export function verifyFrame (step: SpotStep, session: string, dim: number, signer: string): boolean {
  if (step.signer !== signer || signer === '' || (step.sampled && step.tokens.length !== 1)) return false
  const s = signedOf(step, dim)
  return verifyPeer(signer, signedMessage(s.kind, session, s.position, s.content), step.signature)
}

/**
 * The steps of `trace` that are contiguous from position 0 and validly signed by `signerOf(step)`;
 * `bad` counts the steps whose signature did not verify (they end the usable prefix).
 */
export function signedSteps (trace: SpotTrace | undefined, session: string, signerOf: (step: SpotStep) => string): { steps: SpotStep[], bad: number } {
  if (trace === undefined) return { steps: [], bad: 0 }
  const steps: SpotStep[] = []
  let bad = 0
  let next = 0
  for (const st of trace.steps) {
    if (!verifyFrame(st, session, trace.dim, signerOf(st))) { bad++; continue }
    if (st.position === next) { steps.push(st); next += st.rows }
  }
  return { steps, bad }
}

/** Proofs that one signer signed two different frames at one (kind, session, position). */
export function equivocations (a: readonly SpotStep[], b: readonly SpotStep[], session: string, dim: number): Equivocation[] {
  const out: Equivocation[] = []
  const seen = new Map<string, { content: string, signature: string, signer: string }>()
  for (const st of a) {
    const s = signedOf(st, dim)
    seen.set(`${s.kind}:${s.position}:${st.signer}`, { content: Buffer.from(s.content).toString('hex'), signature: Buffer.from(st.signature).toString('base64'), signer: st.signer })
  }
  for (const st of b) {
    const s = signedOf(st, dim)
    const other = seen.get(`${s.kind}:${s.position}:${st.signer}`)
    const content = Buffer.from(s.content).toString('hex')
    if (other === undefined || other.content === content) continue
    const mine = { content, signature: Buffer.from(st.signature).toString('base64') }
    const [x, y] = other.content < content ? [other, mine] : [mine, other]
    out.push({ signer: st.signer, kind: s.kind, session, position: s.position, contents: [x.content, y.content], signatures: [x.signature, y.signature] })
  }
  return out
}

/** The longer of two verified step lists (the first on a tie: the neighbour's record is preferred). */
export function longer (a: SpotStep[], b: SpotStep[]): SpotStep[] {
  const rows = (x: SpotStep[]): number => x.reduce((n, s) => n + s.rows, 0)
  return rows(b) > rows(a) ? b : a
}

/** A recorded frame's hidden states as floats (undefined: not hidden states of `rows` × dim in its codec). */
export function floatsOf (step: SpotStep, dim: number): Float32Array | undefined {
  const wire = codecOf(step.codec)
  const codec = wire === undefined ? undefined : engineCodec(wire)
  if (codec === undefined || step.tokens.length > 0 || step.rows === 0) return undefined
  try {
    return decodeHidden(codec, step.hidden, step.rows * dim)
  } catch {
    return undefined // reason: a frame whose byte length does not fit its codec is no input
  }
}

/** A middle stage's trace: inputs (verified frames its predecessor sent) and fingerprints of its outputs (verified frames it sent). */
export function traceFromNeighbours (sent: readonly SpotStep[], received: readonly SpotStep[], dims: { in: number, out: number }): { inputs: StageInput[], fingerprints: Uint8Array[], rows: number } | undefined {
  const n = Math.min(sent.length, received.length)
  if (n === 0) return undefined
  const inputs: StageInput[] = []
  const fingerprints: Uint8Array[] = []
  let rows = 0
  for (let i = 0; i < n; i++) {
    const a = sent[i]
    const b = received[i]
    const x = floatsOf(a, dims.in)
    const y = floatsOf(b, dims.out)
    if (a.position !== b.position || a.rows !== b.rows || x === undefined || y === undefined) break
    inputs.push({ hidden: x })
    fingerprints.push(fingerprint(y, dims.out))
    rows += a.rows
  }
  return rows === 0 ? undefined : { inputs, fingerprints, rows }
}

/** A first stage's trace: its inputs are the session's signed tokens, its outputs the verified frames it sent. */
export function traceFromTokens (tokens: readonly number[], received: readonly SpotStep[], dim: number): { inputs: StageInput[], fingerprints: Uint8Array[], rows: number } | undefined {
  const inputs: StageInput[] = []
  const fingerprints: Uint8Array[] = []
  let rows = 0
  for (const b of received) {
    const y = floatsOf(b, dim)
    if (b.position !== rows || b.position + b.rows > tokens.length || y === undefined) break
    inputs.push({ tokens: tokens.slice(b.position, b.position + b.rows) })
    fingerprints.push(fingerprint(y, dim))
    rows += b.rows
  }
  return rows === 0 ? undefined : { inputs, fingerprints, rows }
}

/** A last stage's inputs as engine inputs (verified frames its predecessor sent). */
export function inputsOf (sent: readonly SpotStep[], dim: number): { inputs: StageInput[], rows: number } | undefined {
  const inputs: StageInput[] = []
  let rows = 0
  for (const a of sent) {
    const x = floatsOf(a, dim)
    if (a.position !== rows || x === undefined) break
    inputs.push({ hidden: x })
    rows += a.rows
  }
  return rows === 0 ? undefined : { inputs, rows }
}

/** A greedy last stage's checked positions: SPOT_POSITIONS of those with a known next token. */
export function tokenPositions (seed: string[], expected: ReadonlyArray<number | undefined>): number[] {
  const known = expected.flatMap((t, p) => t === undefined ? [] : [p])
  return sampleSpotChecks(seed, known.length, SPOT_POSITIONS).map((i) => known[i])
}

/**
 * The session's tokens as far as signatures back them: the owner's signed prompt (position 0) then
 * each token the last stage signed, in order (stops at the first that does not verify). From the
 * AUDIT's proofs, else from a first stage's own input record (frames it cannot forge). Undefined
 * when no signed prompt is at hand. `frames` / `received`: the signed frames behind each source
 * (the AUDIT's, the record's), for equivocation checks.
 */
/**
 * Where the generated tokens of an AUDIT that `signer` (the chain's last stage) bound with its done
 * receipt begin: the receipt signs `tokens[from..]` (from = receipt.first + 1, not inside the
 * prompt) together with the AUDIT's sampling. Undefined when the AUDIT has no receipt or it does not
 * verify. One 64-byte receipt stands for every generated token, so an AUDIT with one carries no
 * per-token signatures and its size stays ~3 bytes a token (spot-check.ts AUDIT_MAX_TOKENS).
 */
export function receiptStart (a: AuditRequest, signer: string): number | undefined {
  if (a.receipt === undefined || a.sampling === undefined || signer === '') return undefined
  const tokens = a.tokens ?? []
  const from = a.receipt.first + 1
  if (from < (a.promptLength ?? 0) || from >= tokens.length) return undefined
  return verifyPeer(signer, receiptMessage(a.sessionId, a.receipt.first, tokens.slice(from), receiptSampling(a.sampling)), a.receipt.signature) ? from : undefined
}

export function signedTokens (a: AuditRequest, owner: string, last: string, recorded: SpotTrace | undefined): { tokens: number[], promptLength: number, frames: SpotStep[], received?: SpotStep[] } | undefined {
  const fromAudit = (): ReturnType<typeof signedTokens> => {
    const tokens = a.tokens ?? []
    const promptLength = a.promptLength ?? 0
    const prompt = tokens.slice(0, promptLength)
    if (prompt.length === 0 || !verifyPeer(owner, stepMessage(a.sessionId, 0, { tokens: prompt, dtype: HiddenCodec.F32, shape: [] }), a.promptSignature)) return undefined
    const frames: SpotStep[] = [{ position: 0, rows: prompt.length, hidden: new Uint8Array(0), codec: 0, tokens: prompt, signature: a.promptSignature ?? new Uint8Array(0), signer: owner, sampled: false }]
    const out = [...prompt]
    for (let i = promptLength; i < tokens.length; i++) {
      const signature = a.tokenSignatures?.[i - promptLength]
      if (!verifyPeer(last, tokenMessage(a.sessionId, i - 1, tokens[i]), signature)) break
      out.push(tokens[i])
      frames.push({ position: i, rows: 1, hidden: new Uint8Array(0), codec: 0, tokens: [tokens[i]], signature: signature ?? new Uint8Array(0), signer: last, sampled: true })
    }
    // the rest, when the last stage's receipt binds them (it starts within the signed prefix)
    if (out.length < tokens.length) {
      const from = receiptStart(a, last)
      if (from !== undefined && from <= out.length) out.push(...tokens.slice(out.length))
    }
    return { tokens: out, promptLength, frames }
  }
  const fromRecord = (): ReturnType<typeof signedTokens> => {
    const { steps } = signedSteps(recorded, a.sessionId, (st) => st.sampled ? last : owner)
    const first = steps[0]
    if (first === undefined || first.sampled || first.tokens.length === 0) return undefined
    return { tokens: steps.flatMap((st) => st.tokens), promptLength: first.rows, frames: steps }
  }
  const x = fromAudit()
  const y = fromRecord()
  if (x === undefined || y === undefined) return x ?? y
  // both signed, yet different where both reach: someone equivocated (equivocations() over both
  // `frames` proves who) — the subject ran what it received
  const conflict = x.promptLength !== y.promptLength || x.tokens.some((t, i) => i < y.tokens.length && y.tokens[i] !== t)
  const chosen = conflict || y.tokens.length > x.tokens.length ? y : x
  return { tokens: chosen.tokens, promptLength: chosen.promptLength, frames: x.frames, received: y.frames }
}
