// generate({ consensus }) (issue 7): the round owner's side of a consensus round.
//  1. up to k chains with pairwise distinct peers (the shared router, each next chain excluding the
//     peers of the earlier ones, every node the ledger excludes and every node it does not admit
//     for the request's model: a newcomer authors answers only once calibrated on that model),
//     seeds seed + i; fewer chains when the admitted nodes do not make k (at least 2, else
//     NoRouteError);
//  2. every chain runs to the end or the deadline; what finished with the last stage's receipt is
//     an answer, authored by the chain's last stage with the other stages as coauthors (none of
//     them judges it); its id is the receipt's (consensus/answer-receipts.ts) and the judges get
//     its tokens and receipt with the text, check them and judge their own decoding;
//  3. the schedule (consensus/round.ts) from the owner's reputation view among the judges
//     admitted for the model, the commit–reveal judging exchange with the scheduled judges
//     (protocols/consensus), settlement; the round record names the model, so every ledger
//     settles it among the same judges;
//  4. the round record written into the swarm state when the owner is a member (a daemon); a
//     light client runs the round the same way but records nothing (it is not a writer).
// The winner's text is then streamed as the request's tokens; `done.consensus` carries the ranking.
import type { AbortOptions, Stream } from '@libp2p/interface'
import type { Tokenizer } from '../engine/index.ts'
import { decodeAnswer, receiptAnswerId } from '../consensus/answer-receipts.ts'
import { compareText, digestFields, toHex } from '../consensus/digest.ts'
import { receiptContent, receiptSampling, type ReceiptSampling } from '../protocols/inference/frame-signature.ts'
import { admittedFor, deriveLedger, rawWeight, recordData, recordId, scheduleRound, settleRound, type Answer, type PairSchedule, type ReputationState, type RoundOutcome, type RoundRecord } from '../consensus/index.ts'
import { chainRouter, collectJudging, consensusJudgeProtocol, runInference } from '../protocols/index.ts'
import type { ChainHop, FrameSigner } from '../protocols/index.ts'
import { ShardUnavailableError } from '../sharding/index.ts'
import { InvalidRequestError, NoRouteError } from './errors.ts'
import type { ModelInfo, SwarmReader } from './route.ts'
import { requestAudits, type AuditOutcome } from './consensus-audit.ts'

/** Default answers per round and time for the answers (ms). */
export const CONSENSUS_DEFAULT_K = 3
export const CONSENSUS_DEFAULT_DEADLINE_MS = 60_000
export const CONSENSUS_MAX_K = 16
/** Judging attempts when every judge refuses (a stale ledger), and the pause between them (ms). */
export const JUDGING_ATTEMPTS = 5
export const REFUSED_RETRY_MS = 1000

/** The owner's view of reputation and, on a member, where its records go. */
export interface ConsensusHost {
  /** The reputation state to schedule with (the node's ledger). */
  reputation: () => ReputationState
  /**
   * Excluded nodes are never routed. `model`, when given (a round's chains), asks about that model
   * (a node refused by calibration on it); without it, about the node whatever it serves.
   */
  excluded?: (peer: string, model?: string) => boolean
  /** Writes a consensus record into the owner's namespace of the swarm state (members only). */
  record?: (id: string, data: Record<string, unknown>) => Promise<void>
  /** The highest round seq known (the owner takes the next). */
  lastSeq?: () => number
  /** Fraction of plain (non-consensus) requests whose every stage is spot-checked, as a round's chains (default none). */
  auditRate?: number
}

export interface ConsensusRequest {
  k?: number
  deadlineMs?: number
}

/** One answer of the round, as the request's metadata. */
export interface ConsensusAnswer {
  id: string
  /** The chain that produced it (the last hop is the author). */
  chain: Array<{ peer: string, start: number, end: number }>
  seed: number
  tokens: number[]
  text: string
  /** Bradley–Terry strength (1 when nobody judged it). */
  strength: number
}

export interface ConsensusMeta {
  round: string
  k: number
  winner: string
  /** Answer ids, best first. */
  ranking: string[]
  answers: ConsensusAnswer[]
  judges: string[]
  failures: Array<{ judge: string, reason: string }>
  /** Whether the round record went into the swarm state. */
  recorded: boolean
  /** Spot-checks asked of verifiers (each queues its check and writes the evidence record itself). */
  audits: AuditOutcome[]
}

export interface ConsensusRun {
  self: string
  swarm: string
  state: SwarmReader
  online: () => string[]
  openStream: (peer: string, protocol: string, options: AbortOptions) => Promise<Stream>
  inferenceProtocol: string
  info: ModelInfo
  tokenizer: Tokenizer
  prompt: number[]
  promptText: string
  maxTokens: number
  seed: number
  sampling: { temperature: number, topP: number, topK: number }
  codecBytes: number
  host: ConsensusHost
  /** Signs the prompts (the owner's proof of each session's inputs for first-stage audits). */
  signer?: FrameSigner
  signal: AbortSignal
}

/** A last stage's receipt: its signature over the tokens it sampled in `session`, the first from the logits at `first`. */
export interface Receipt { session: string, first: number, signature: Uint8Array }

/** A round record's receipt entry for answer `id` (consensus/records.ts RoundRecord.receipts; its content hash binds the tokens and the chain's `sampling`); undefined when unsigned. */
export function receiptEntry (id: string, tokens: readonly number[], receipt: Receipt | undefined, sampling: { temperature: number, topP: number, topK: number, seed: number }): string[] | undefined {
  if (receipt === undefined || receipt.signature.length === 0) return undefined
  return [id, receipt.session, String(receipt.first), toHex(receiptContent(tokens, receiptSampling(sampling))), Buffer.from(receipt.signature).toString('base64')]
}

/**
 * The round's schedule as its owner draws it: among the judges `state` admits for `model` (the
 * request's model: a judge scores answers with its own model) — the schedule every judge's accept
 * (node/consensus-judge.ts) and every ledger's settlement (consensus/ledger.ts, from the record's
 * `model`) recompute.
 */
export function roundSchedule (state: ReputationState, round: string, answers: readonly Answer[], model: string): PairSchedule {
  return scheduleRound(state, round, answers, undefined, { model })
}

/** The owner's round record (consensus/records.ts): it names the model, so every ledger settles the round among the same judges. */
export function roundRecord (r: { round: string, model: string, seq: number, deadline: number, answers: readonly Answer[], reveals: ReadonlyArray<{ judge: string, at: number }>, outcome: RoundOutcome, receipts: string[][] }): RoundRecord {
  return {
    t: 'round',
    round: r.round,
    model: r.model,
    seq: r.seq,
    deadline: r.deadline,
    answers: r.answers.map((a) => [a.id, a.author, ...(a.coauthors ?? [])]),
    reveals: r.reveals.map((x) => [x.judge, x.at] as [string, number]),
    winner: r.outcome.winner,
    ranking: r.outcome.ranking,
    receipts: r.receipts
  }
}

/** Chains with pairwise distinct peers: each routed with the earlier chains' peers excluded. */
export function disjointChains (views: { nodes: SwarmReader['nodes'], online: () => string[] }, k: number, options: { model: { id: string, nLayers: number }, hiddenBytesPerToken: number, self?: string, exclude?: (peer: string) => boolean }): ChainHop[][] {
  const used = new Set<string>()
  const chains: ChainHop[][] = []
  const online = (): string[] => views.online().filter((p) => options.exclude?.(p) !== true)
  for (let i = 0; i < k; i++) {
    const router = chainRouter({ nodes: views.nodes, online }, { model: options.model, hiddenBytesPerToken: options.hiddenBytesPerToken, exclude: used, ...(options.self !== undefined ? { self: options.self } : {}) })
    let chain: ChainHop[]
    try {
      chain = router.route()
    } catch (err) {
      if (err instanceof ShardUnavailableError) break
      throw err
    }
    chains.push(chain)
    for (const hop of chain) used.add(String(hop.peer))
  }
  return chains
}

/**
 * The round's chains: at most k, pairwise disjoint, only through nodes the owner's ledger admits
 * for the request's model (issue 7: a new identity enters rounds only after passing calibration on
 * the model it serves — a node admitted for another model is calibrated again; a pending newcomer
 * still serves plain requests) and does not exclude. Fewer than k when the admitted nodes do not
 * cover k chains: `k` is an upper bound, the round runs with the chains there are (at least 2,
 * else the caller's NoRouteError).
 */
export function roundChains (run: Pick<ConsensusRun, 'state' | 'online' | 'info' | 'codecBytes' | 'self' | 'host'>, k: number): ChainHop[][] {
  const rep = run.host.reputation()
  const excluded = run.host.excluded
  const model = run.info.id
  return disjointChains({ nodes: () => run.state.nodes(), online: run.online }, k, {
    model: { id: model, nLayers: run.info.manifest.nLayers },
    hiddenBytesPerToken: run.info.manifest.dim * run.codecBytes,
    self: run.self,
    exclude: (p) => excluded?.(p, model) === true || !admittedFor(rep.nodes.get(p), model)
  })
}

/** Runs the round; resolves with the ranking (the winner first). */
export async function runConsensusRound (run: ConsensusRun, request: ConsensusRequest): Promise<ConsensusMeta> {
  const k = request.k ?? CONSENSUS_DEFAULT_K
  if (!Number.isInteger(k) || k < 2 || k > CONSENSUS_MAX_K) throw new InvalidRequestError(`consensus.k must be an integer in [2, ${CONSENSUS_MAX_K}]`, 'consensus')
  const deadlineMs = request.deadlineMs ?? CONSENSUS_DEFAULT_DEADLINE_MS
  if (!Number.isFinite(deadlineMs) || deadlineMs <= 0) throw new InvalidRequestError('consensus.deadline_ms must be a positive number', 'consensus')
  const chains = roundChains(run, k)
  if (chains.length < 2) {
    const pending = run.online().filter((p) => !admittedFor(run.host.reputation().nodes.get(p), run.info.id)).length
    throw new NoRouteError(`consensus needs at least 2 chains with distinct admitted nodes; the swarm has ${chains.length} for model ${run.info.id.slice(0, 12)}${pending > 0 ? ` (${pending} online node${pending === 1 ? ' is' : 's are'} not admitted for it yet)` : ''}`)
  }
  const answerSignal = AbortSignal.any([run.signal, AbortSignal.timeout(deadlineMs)])
  const outputs = await Promise.all(chains.map(async (chain, i) => {
    const tokens: number[] = []
    // the last stage's signature of each token and its receipt over all of them (the answer's proof of authorship)
    const signatures: Array<Uint8Array<ArrayBuffer>> = []
    let receipt: Receipt | undefined
    let sessionId: string | undefined
    try {
      for await (const ev of runInference(async (peer, proto, options) => await run.openStream(String(peer), proto, options), run.inferenceProtocol, {
        chain,
        prompt: run.prompt,
        maxLength: run.prompt.length + run.maxTokens - 1,
        model: run.info.id,
        signal: answerSignal,
        ...(run.signer !== undefined ? { signer: run.signer } : {}),
        sampling: { ...run.sampling, seed: run.seed + i, maxTokens: run.maxTokens }
      })) {
        if (ev.type === 'open') sessionId = ev.sessionId
        if (ev.type === 'token') { tokens.push(ev.id); signatures.push(ev.signature as Uint8Array<ArrayBuffer>) }
        if (ev.type === 'done') receipt = { session: ev.sessionId, first: ev.first, signature: ev.receipt }
        // the stages stop at maxTokens (the done token carries the receipt); this bounds one that does not
        if (ev.type === 'done' || tokens.length > run.maxTokens) return { chain, tokens: tokens.slice(0, run.maxTokens), signatures, receipt, seed: run.seed + i, sessionId }
      }
      return { chain, tokens, signatures, receipt, seed: run.seed + i, sessionId }
    } catch {
      return undefined // reason: a chain that failed or missed the deadline gives no answer
    }
  }))
  if (run.signal.aborted) throw run.signal.reason
  const finished = outputs.filter((o) => o !== undefined && o.tokens.length > 0) as Array<{ chain: ChainHop[], tokens: number[], signatures: Array<Uint8Array<ArrayBuffer>>, receipt?: Receipt, seed: number, sessionId?: string }>
  // an answer is what its last stage signed: one without a receipt (a last stage without a key) is
  // no answer of the round (judges refuse it, and no ledger could credit it)
  const done = finished.filter((o) => o.receipt !== undefined && o.receipt.signature.length > 0) as Array<(typeof finished)[number] & { receipt: Receipt }>
  if (done.length === 0) throw new NoRouteError(finished.length === 0 ? 'no chain of the consensus round answered before the deadline' : 'no chain of the consensus round answered with its last stage\'s receipt')
  const round = `${run.self}:${Date.now()}-${toHex(digestFields([run.promptText, String(run.seed), String(Math.random())])).slice(0, 8)}`
  const texts = new Map<string, string>()
  const authors = new Map<string, string[]>()
  const answers: Answer[] = []
  const meta: ConsensusAnswer[] = []
  const receipts: string[][] = []
  const signed = new Map<string, { tokens: number[], session: string, first: number, sampling: ReceiptSampling, signature: Uint8Array }>()
  for (const o of done) {
    const text = decodeAnswer(run.tokenizer, run.prompt[run.prompt.length - 1], o.tokens)
    const peers = o.chain.map((h) => String(h.peer))
    // the answer id is its receipt's (session, content: the tokens and their sampling): a judge's
    // vote on it is a vote on the tokens the author signed, which every ledger checks
    // (consensus/answer-receipts.ts); the judges get the receipt and check it
    const sampling = receiptSampling({ ...run.sampling, seed: o.seed })
    const id = receiptAnswerId(round, o.receipt.session, toHex(receiptContent(o.tokens, sampling)))
    signed.set(id, { tokens: o.tokens, session: o.receipt.session, first: o.receipt.first, sampling, signature: o.receipt.signature })
    const author = peers[peers.length - 1]
    // the receipt proves the chain's last stage sampled exactly these tokens (the ledger checks it)
    const entry = receiptEntry(id, o.tokens, o.receipt, { ...run.sampling, seed: o.seed })
    if (entry !== undefined) receipts.push(entry)
    const coauthors = peers.slice(0, -1)
    texts.set(id, text)
    authors.set(id, [author, ...coauthors])
    answers.push({ id, author, ...(coauthors.length > 0 ? { coauthors } : {}) })
    meta.push({ id, chain: o.chain.map((h) => ({ peer: String(h.peer), start: h.start, end: h.end })), seed: o.seed, tokens: o.tokens, text, strength: 1 })
  }
  // Judges recompute the schedule from their own ledgers and refuse pairs that are not theirs: when
  // every judge refuses, this owner's ledger is behind (a fresh light client's replica is still
  // filling), so it re-derives and asks again, up to JUDGING_ATTEMPTS times, REFUSED_RETRY_MS apart.
  // judges admitted for this model only: every judge and every ledger schedules the same way
  const model = run.info.id
  let state = run.host.reputation()
  let schedule = roundSchedule(state, round, answers, model)
  let judged: Awaited<ReturnType<typeof collectJudging>> = { commitments: [], reveals: [], failures: [] }
  for (let attempt = 1; schedule.assignments.length > 0; attempt++) {
    judged = await collectJudging({
      round,
      prompt: run.promptText,
      answers: texts,
      receipts: signed,
      authors,
      assignments: schedule.assignments,
      open: async (judge, options) => await run.openStream(judge, consensusJudgeProtocol(run.swarm), options)
    }, { signal: run.signal })
    const allRefused = judged.commitments.length === 0 && judged.failures.length > 0 && judged.failures.every((f) => f.reason.includes('REFUSED'))
    if (!allRefused || attempt >= JUDGING_ATTEMPTS || run.signal.aborted) break
    await new Promise((resolve) => setTimeout(resolve, REFUSED_RETRY_MS))
    state = run.host.reputation()
    schedule = roundSchedule(state, round, answers, model)
  }
  const deadline = Date.now()
  const settled = settleRound(state, { round, model, answers, commitments: judged.commitments, reveals: judged.reveals, deadline })
  const strengths = new Map(settled.outcome.strengths)
  for (const a of meta) a.strength = strengths.get(a.id) ?? 1
  let recorded = false
  if (run.host.record !== undefined) {
    const rec = roundRecord({ round, model, seq: (run.host.lastSeq?.() ?? 0) + 1, deadline, answers, reveals: judged.reveals, outcome: settled.outcome, receipts })
    await run.host.record(recordId(rec), recordData(rec))
    recorded = true
  }
  // spot-checks of every stage of the chains that answered (first stages with the tokens, last stages of greedy requests) (client/consensus-audit.ts)
  const audits = await requestAudits({ round, swarm: run.swarm, model: run.info.id, self: run.self, state: run.state, online: run.online, reputation: state, chains: done, prompt: run.prompt, greedy: run.sampling.temperature === 0, sampling: run.sampling, openStream: run.openStream, ...(run.signer !== undefined ? { signer: run.signer } : {}), signal: run.signal })
  const order = new Map(settled.outcome.ranking.map((id, i) => [id, i]))
  meta.sort((a, b) => (order.get(a.id) ?? 1e9) - (order.get(b.id) ?? 1e9) || compareText(a.id, b.id))
  return {
    round,
    k,
    winner: settled.outcome.winner,
    ranking: settled.outcome.ranking,
    answers: meta,
    judges: [...new Set(schedule.assignments.map((a) => a.judge))].sort(compareText),
    failures: judged.failures,
    recorded,
    audits
  }
}

/** Genesis (admitted without calibration): the peer ids the bootstrap multiaddrs name; none → `self` (the founding anchor). */
export function genesisFromBootstrap (bootstrap: readonly string[], self: string): string[] {
  const ids = new Set<string>()
  for (const addr of bootstrap) {
    const at = addr.lastIndexOf('/p2p/')
    if (at >= 0) ids.add(addr.slice(at + 5).split('/')[0])
  }
  if (ids.size === 0) ids.add(self)
  return [...ids].sort(compareText)
}

/** A light client's consensus host: reputation derived from its read-only replica; it records nothing. */
export function replicaConsensusHost (state: { rounds: () => Array<{ id: string, data: unknown, writer: string }> }, genesis: readonly string[]): ConsensusHost {
  const ledger = (): ReturnType<typeof deriveLedger> => deriveLedger(state.rounds().map((r) => ({ id: r.id, data: r.data, writer: r.writer })), { genesis })
  return {
    reputation: () => ledger().state,
    excluded: (peer) => ledger().state.nodes.get(peer)?.excluded === true
  }
}

/**
 * Per node: admitted, excluded, evidence and vote weight (sorted by peer id); `models`, the models
 * it passed calibration on, when it was admitted by calibration (absent for a founder: every model).
 */
export function reputationSummary (state: ReputationState | undefined): Record<string, { admitted: boolean, excluded: boolean, positive: number, negative: number, weight: number, models?: string[] }> {
  const out: ReturnType<typeof reputationSummary> = {}
  for (const [id, r] of [...(state?.nodes ?? new Map())].sort(([a], [b]) => compareText(a, b))) {
    out[id] = { admitted: r.admitted, excluded: r.excluded, positive: r.positive, negative: r.negative, weight: rawWeight(r), ...(r.models !== undefined ? { models: [...r.models] } : {}) }
  }
  return out
}
