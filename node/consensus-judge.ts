// Consensus on a daemon (issue 7): the judge behind the host's consensus-judge service, the
// calibration of newcomers, and the round owner's host (reputation + record writer) for the API.
//
// - Judge model: the likelihood judge (consensus/likelihood-judge.ts) on a whole-model shard of the
//   node's own model file, loaded lazily at the first judging request when its weights fit
//   JUDGE_MAX_MODEL_BYTES (and a quarter of --max-memory when set) and, on a serving node, when its
//   start-up accounting reserved the consensus copies (consensusMemory: layers first, the copies
//   held back from the advertised memory); otherwise it declines (FAILED) — an LLM judge over the
//   swarm is not wired yet.
// - accept: the round's owner (its id prefix) is not excluded in this node's ledger (a light client
//   may own a round; only an admitted owner's round record counts in the ledger), and the pairs asked are exactly this node's assignment in the schedule it recomputes from its
//   own ledger with the answers' authors the owner sent, among the judges admitted for this node's
//   own model (the only model it judges with; the owner and every ledger schedule a round among the
//   judges admitted for the round's model) — a disagreement (records in flight, a round on another
//   model) refuses; the ledger would otherwise fine a vote on an unassigned pair.
// - answerText: an answer is judged only with its author's receipt (the last stage's signature over
//   the tokens it sampled; the answer id is the receipt's) and as this judge's own decoding of those
//   tokens; a request with an answer that fails either is refused UNVERIFIED (issue 7: the text
//   judged is the text the last stage signed; protocols/consensus/answer-check.ts).
// - commit and reveal are written as signed records in this node's namespace (`round/c|r/<round>`).
// - Calibration (admission, per model): every node with a judge model that its ledger admits for
//   that model calibrates, one at a time, each online member whose record names the same model and
//   that its ledger does not admit for it (a member admitted for another model that now serves
//   this one is calibrated again, on this one; the retry backoff is per (subject, model)):
//   seeded tasks → its own exact greedy continuations → known-answer pairs (continuation vs a
//   scramble), each sent as one judging exchange (`calibration:<challenge>:<i>`, no records);
//   every pair right = passed; the verifier writes `round/k/<subject>/<challenge>` naming the
//   model. The ledger admits the subject for that model on a passed record of a verifier admitted
//   for it (genesis nodes count as admitted for every model). What is checked over the wire is the
//   subject's judging on known pairs, computed with its model, AND its own outputs on the layers it
//   serves: a stage challenge (consensus/stage-challenge.ts: tokens for a first stage, seeded
//   hidden states otherwise, from the challenge id) sent over the spot-check protocol (CHALLENGE)
//   and checked against this node's copy of the same layers, loaded in the dtype the subject's
//   record names (exact greedy tokens for a last stage, fingerprints within the dtype tolerance
//   otherwise; an f32 reference refuses an honest q4_0 last stage most of the time). Both must pass.
//   A judge-only member (--judge-model: no layers; its record's `judgeModel` names the model) has
//   no stage: it is calibrated on the judging pairs alone.
//   A wrong answer writes a failed record (the ledger then calls the subject `refused`, and the
//   owner's host below does not route it); no answer (it declined judging, its stage is not served,
//   a timeout) writes nothing and is retried after CALIBRATION_RETRY_MS; a subject that answered
//   wrongly is retried after a doubling wait (calibrationRetryMs, at most an hour).
import type { Logger } from 'pino'
import { commitBallot } from '../consensus/commit-reveal.ts'
import { admittedFor, calibrationTasks, checkStageChallenge, greedyContinuation, knownPairs, meanLogProb, parseRecord, recordData, recordId, scheduleRound, shardLogits, stageChallenge, type ConsensusRecord, type ReputationState, type StageChallengeResult } from '../consensus/index.ts'
import { loadShard, sessionStepper, openTokenizer } from '../engine/index.ts'
import type { Shard, Tokenizer, WeightDType } from '../engine/index.ts'
import type { ConsensusHost } from '../client/consensus.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { collectJudging } from '../protocols/index.ts'
import { requestChallenge } from '../protocols/consensus/index.ts'
import { verifiedAnswerText } from '../protocols/consensus/answer-check.ts'
import { layerCapacity, type ModelManifest } from '../sharding/index.ts'
import type { NodeRecord } from '../crdt/index.ts'
import type { MyceliumHost } from './host.ts'
import type { NodeModel, OpenedModel } from './model-startup.ts'
import type { LedgerService } from './reputation.ts'

/** Largest whole model a node loads for judging (weights, bytes). */
export const JUDGE_MAX_MODEL_BYTES = 256 * 1024 * 1024
/** How often the calibration loop looks for unadmitted members (ms), and how long before a subject is retried. */
export const CALIBRATION_POLL_MS = 1000
export const CALIBRATION_RETRY_MS = 30_000
/** Longest wait before a subject that answered wrongly is calibrated again (ms; doubling from CALIBRATION_RETRY_MS). */
export const CALIBRATION_MAX_RETRY_MS = 60 * 60_000

/** Subjects remembered for the backoff before entries older than CALIBRATION_MAX_RETRY_MS are dropped. */
const CALIBRATION_MAX_TRIED = 4096

/**
 * Wait before this node calibrates a subject again after `failures` failed verdicts of its own:
 * CALIBRATION_RETRY_MS doubled per failure, at most CALIBRATION_MAX_RETRY_MS — a node that keeps
 * answering wrongly costs each calibrator a record per hour at most, not one per 30 s.
 */
export function calibrationRetryMs (failures: number): number {
  return Math.min(CALIBRATION_MAX_RETRY_MS, CALIBRATION_RETRY_MS * 2 ** Math.min(failures, 20))
}
/** Fraction of the API's plain requests whose middle stages are spot-checked (client/consensus-audit.ts). */
export const SPOT_AUDIT_RATE = 0.1
/** Known-answer pairs per calibration, prompt tokens and greedy tokens per task. */
export const CALIBRATION_TASKS = 2
const CALIBRATION_PROMPT_TOKENS = 4
const CALIBRATION_TOKENS = 12

/** Bytes of the whole model's weights in `dtype` (what the judge loads). */
export function wholeModelBytes (manifest: ModelManifest, dtype: WeightDType): number {
  return manifest.nLayers * manifest.layerBytes[dtype] + manifest.embeddingBytes + manifest.headBytes
}

/** The most a judge (or a spot-check verifier's copy) may take: JUDGE_MAX_MODEL_BYTES, and a quarter of --max-memory when set. */
export function judgeBudgetBytes (maxMemoryBytes?: number): number {
  return maxMemoryBytes === undefined ? JUDGE_MAX_MODEL_BYTES : Math.min(JUDGE_MAX_MODEL_BYTES, maxMemoryBytes / 4)
}

/** What consensus work holds in memory beside the layers a node serves, and what it advertises. */
export interface ConsensusMemory {
  /** Judging and calibrating newcomers are on (the reserve is held back). */
  judging: boolean
  /** The judge's whole-model copy. */
  judgeBytes: number
  /** Bound of the calibrator's temporary copy of a subject's range: the whole model in f32 (the copy is loaded in the subject's dtype, f32 the largest). */
  calibrationBytes: number
  /** Bound of the spot-check verifier's cached copy of an audited range (node/spot-check.ts refuses bigger ones). */
  verifierBytes: number
  /** Held back from the budget when judging: judge + calibration + verifier copies (all can be resident at once). */
  reserveBytes: number
  /** The memory the node advertises for layers and KV (its record's `memoryBytes`): budget − reserve. */
  advertisedBytes: number
}

/**
 * A serving node's consensus memory (issue 7). Every node lazily loads a whole-model copy to judge
 * (≤ the judge budget), a calibrator loads a temporary copy of the subject's range in the subject's
 * dtype (≤ the whole model in f32, one at a time), and a verifier caches one audited range (≤ the
 * judge budget and ≤ the whole model). Layers first: judging is on only when the whole model fits the judge budget AND
 * holding all three back from the budget costs the node no layer — the layers it pins
 * (`servedLayers`, `--layers a:b`), else the layers its budget holds for the allocator
 * (sharding's layerCapacity, KV reserve included). A node near its memory limit therefore
 * serves its layers and does not judge, and a judging node advertises budget − reserve, so the
 * allocator never counts the consensus copies as room for layers.
 */
export function consensusMemory (manifest: ModelManifest, dtype: WeightDType, options: { budgetBytes: number, maxMemoryBytes?: number, servedLayers?: number }): ConsensusMemory {
  const judgeBytes = wholeModelBytes(manifest, dtype)
  const budget = judgeBudgetBytes(options.maxMemoryBytes)
  const verifierBytes = Math.min(judgeBytes, budget)
  const calibrationBytes = wholeModelBytes(manifest, 'f32')
  const reserveBytes = judgeBytes + calibrationBytes + verifierBytes
  const capacity = (memoryBytes: number): number => layerCapacity(manifest, { decodeLayerMs: 1, prefillLayerMsPerToken: 1, memoryBytes: Math.max(0, memoryBytes) }, { dtype })
  const held = options.servedLayers ?? capacity(options.budgetBytes)
  const judging = judgeBytes <= budget && reserveBytes < options.budgetBytes && capacity(options.budgetBytes - reserveBytes) >= held
  return { judging, judgeBytes, calibrationBytes, verifierBytes, reserveBytes: judging ? reserveBytes : 0, advertisedBytes: judging ? options.budgetBytes - reserveBytes : options.budgetBytes }
}

/**
 * A judge's check of a judging request: `pairs` are exactly `self`'s assignment in the schedule of
 * `round` it recomputes from `state` with the answers' authors the owner sent. The round is taken
 * to be on the judge's own `model` (the only one it can judge: it decodes and scores with it), so
 * the schedule is among the judges admitted for that model — as the owner draws it
 * (client/consensus.ts roundSchedule); a round on another model is refused here when its schedule
 * differs, else by answerText (its tokens do not decode to the texts sent: UNVERIFIED). Without
 * `model` (a judge-only node still hashing its model), among every admitted node.
 */
export function isOwnAssignment (state: ReputationState, self: string, round: string, pairs: ReadonlyArray<{ first: string, second: string }>, answers: ReadonlyArray<{ id: string, authors: string[] }>, model?: string): boolean {
  const list = answers.map((a) => ({ id: a.id, author: a.authors[0], ...(a.authors.length > 1 ? { coauthors: a.authors.slice(1) } : {}) }))
  const mine = new Set(scheduleRound(state, round, list, undefined, model !== undefined ? { model } : {}).assignments.filter((x) => x.judge === self).map((x) => `${x.first}\u0000${x.second}`))
  return mine.size === pairs.length && pairs.every((p) => mine.has(`${p.first}\u0000${p.second}`))
}

/** The calibration backoff's key: per (subject, model), so a subject calibrated on one model is tried afresh on another. */
export function calibrationKey (subject: string, model: string): string {
  return `${subject}\u0000${model}`
}

/**
 * The member a node holding `model` calibrates next (lowest id first): online, not itself, not
 * admitted for `model` in `state` — a member admitted for another model that starts serving this
 * one is calibrated again, on this one —, serving layers of `model` (or, with no layers, judging
 * it: a judge-only member's `judgeModel`), and past its backoff in `tried` (calibrationKey).
 */
export function calibrationCandidate (members: Iterable<[string, NodeRecord]>, o: { self: string, online: ReadonlySet<string>, state: ReputationState, model: string, tried: ReadonlyMap<string, { at: number, failures: number }>, now: number }): { id: string, r: NodeRecord } | undefined {
  const waited = (id: string): boolean => { const t = o.tried.get(calibrationKey(id, o.model)); return o.now - (t?.at ?? 0) > calibrationRetryMs(t?.failures ?? 0) }
  return [...members].map(([id, r]) => ({ id, r })).sort((a, b) => (a.id < b.id ? -1 : 1)).find(({ id, r }) =>
    id !== o.self && o.online.has(id) && !admittedFor(o.state.nodes.get(id), o.model) && waited(id) && (r.layers.some((l) => l.model === o.model) || (r.layers.length === 0 && r.capabilities.judgeModel === o.model)))
}

export interface ConsensusNode {
  /** The owner's host for the API's client (reputation, records). */
  owner: ConsensusHost
  stop: () => Promise<void>
}

/** Highest seq of the consensus records in the replica (the next round or calibration takes seq + 1). */
export function lastSeq (rounds: () => Array<{ id: string, data: unknown }>): number {
  let max = 0
  for (const r of rounds()) {
    try {
      const rec = parseRecord(r.id, r.data)
      if ('seq' in rec && rec.seq > max) max = rec.seq
    } catch {
      continue // reason: a record that does not parse is ignored, as the ledger does
    }
  }
  return max
}

export function startConsensusNode (host: MyceliumHost, opened: OpenedModel | undefined, model: NodeModel | undefined, ledger: LedgerService, options: { maxMemoryBytes?: number, judgeOnly?: boolean, log: Logger }): ConsensusNode {
  const { log } = options
  const self = host.peerId.toString()
  const state = host.services.swarmSync.state
  const write = async (r: ConsensusRecord): Promise<void> => { await state.recordRound(recordId(r), recordData(r) as never) }
  const rounds = (): Array<{ id: string, data: unknown, writer: string }> => state.rounds().map((r) => ({ id: r.id, data: r.data, writer: r.writer }))
  let judgeModel: Promise<{ shard: Shard, tokenizer: Tokenizer }> | undefined
  let closed = false
  // a serving node judges only when its start-up accounting reserved the copies (model.consensus,
  // consensusMemory: not before its capability is measured); a judge-only node (--judge-model,
  // no layers) when the whole model fits the judge budget
  const fits = (): boolean => {
    const m = model?.manifest
    if (opened === undefined || m === undefined) return false
    if (options.judgeOnly !== true) return model?.consensus?.judging === true
    return wholeModelBytes(m, model?.dtype ?? 'f32') <= judgeBudgetBytes(options.maxMemoryBytes)
  }
  const loadJudge = async (): Promise<{ shard: Shard, tokenizer: Tokenizer }> => {
    if (opened === undefined || !fits()) throw new Error('no judge model on this node (none, or too large)')
    judgeModel ??= (async () => {
      const shard = await loadShard(opened.source, { start: 0, end: opened.source.config.nLayers, dtype: opened.dtype, threads: 1 })
      const tokenizer = await openTokenizer(opened.source)
      log.info({ event: 'judge-model', weightBytes: shard.weightBytes }, 'loaded the whole model for judging')
      return { shard, tokenizer }
    })()
    judgeModel.catch(() => { judgeModel = undefined })
    return await judgeModel
  }
  const service = host.services.consensusJudge
  service.setJudge({
    judgeFn: async (prompt, first, second) => {
      const { shard, tokenizer } = await loadJudge()
      const logitsOf = shardLogits(shard)
      const p = tokenizer.encode(prompt, { bos: true })
      const room = shard.config.seqLen - p.length
      const a = meanLogProb(logitsOf, shard.config.vocabSize, p, tokenizer.encode(first).slice(0, room))
      const b = meanLogProb(logitsOf, shard.config.vocabSize, p, tokenizer.encode(second).slice(0, room))
      return a > b ? 'first' : b > a ? 'second' : 'tie'
    },
    // the text judged is the text the author signed: each answer's receipt must check (its id is the
    // receipt's, the author signed the tokens) and the text sent must be this judge's own decoding
    // of the tokens; otherwise the request is refused UNVERIFIED (protocols/consensus/answer-check.ts).
    // Calibration pairs are the calibrator's known-answer texts (no receipts).
    answerText: async ({ round, prompt }, a) => {
      if (round.startsWith('calibration:')) return a.text
      const { tokenizer } = await loadJudge()
      return verifiedAnswerText(tokenizer, round, prompt, { id: a.id, author: a.authors[0] ?? '', tokens: a.tokens, session: a.session, first: a.first, ...(a.sampling !== undefined ? { sampling: a.sampling } : {}), receipt: a.receipt, text: a.text })
    },
    accept: (round, pairs, answers) => {
      if (round.startsWith('calibration:')) return true
      const owner = round.slice(0, Math.max(0, round.indexOf(':')))
      // an excluded owner is refused; a light client (no record, not in the ledger) may own rounds
      // (its round counts for nobody's reputation: it cannot write the round record)
      if (owner === '' || ledger.state().nodes.get(owner)?.excluded === true) return false
      if (answers.some((a) => a.authors.length === 0)) return false
      const own = model?.manifest?.id
      // the ledger as last derived (debounced); re-derived once only when it disagrees (records may
      // have just arrived), so a stream of requests does not re-fold the whole ledger each time
      return isOwnAssignment(ledger.state(), self, round, pairs, answers, own) || isOwnAssignment(ledger.refresh().state, self, round, pairs, answers, own)
    },
    onCommit: async (c) => { if (!c.round.startsWith('calibration:')) await write({ t: 'commit', round: c.round, commitment: c.commitment }) },
    onReveal: async (r) => { if (!r.round.startsWith('calibration:')) await write({ t: 'reveal', round: r.round, votes: r.votes, salt: r.salt }) }
  })

  // Calibration of newcomers by admitted nodes.
  // per (subject, model): when this node last tried it and how many failed verdicts it gave it (backoff)
  const tried = new Map<string, { at: number, failures: number }>()
  let busy = false
  const calibrateOne = async (): Promise<void> => {
    const manifestId = model?.manifest?.id
    if (busy || closed || manifestId === undefined || !fits()) return
    // admission is per model: this node vouches only for the model it holds and is admitted for
    const me = ledger.state().nodes.get(self)
    if (!admittedFor(me, manifestId) || me?.excluded === true) return
    const now = Date.now()
    const key = (id: string): string => calibrationKey(id, manifestId)
    const found = calibrationCandidate(state.nodes(), { self, online: new Set(state.online()), state: ledger.state(), model: manifestId, tried, now })
    if (found === undefined) return
    const subject = found.id
    const range = found.r.layers.find((l) => l.model === manifestId && l.end > l.start && l.end <= (opened?.source.config.nLayers ?? 0))
    busy = true
    const failures = tried.get(key(subject))?.failures ?? 0
    if (tried.size > CALIBRATION_MAX_TRIED) for (const [k, t] of tried) if (now - t.at > CALIBRATION_MAX_RETRY_MS) tried.delete(k) // a stream of identities does not grow it
    tried.set(key(subject), { at: now, failures })
    try {
      const { shard, tokenizer } = await loadJudge()
      const challenge = `${now}-${Math.floor(Math.random() * 2 ** 31).toString(36)}`
      const tasks = calibrationTasks({ challenge, candidate: subject, vocab: shard.config.vocabSize, bosId: 1, tasks: CALIBRATION_TASKS, promptTokens: CALIBRATION_PROMPT_TOKENS, tokens: CALIBRATION_TOKENS })
      const references: number[][] = []
      for (const task of tasks) {
        const session = shard.openSession({ maxLength: task.prompt.length + task.tokens + 1 })
        try { references.push(await greedyContinuation(sessionStepper(session), task, 1)) } finally { session.close() }
      }
      const pairs = knownPairs(challenge, subject, tasks, references, shard.config.vocabSize)
      let right = 0
      let unanswered = 0
      for (const [i, pair] of pairs.entries()) {
        const round = `calibration:${challenge}:${i}`
        const r = await collectJudging({
          round,
          prompt: tokenizer.decode(pair.prompt.slice(1)),
          answers: new Map([['a', tokenizer.decode(pair.first)], ['b', tokenizer.decode(pair.second)]]),
          assignments: [{ judge: subject, first: 'a', second: 'b' }],
          open: async (judge, o) => await host.dialProtocol(peerIdFromString(judge), service.protocol, o)
        })
        const c = r.commitments[0]
        const v = r.reveals[0]
        if (c === undefined) { unanswered++; continue } // it declined or did not answer: no verdict
        if (v === undefined || commitBallot(round, subject, v.votes, v.salt) !== c.commitment) continue
        if (v.votes.length === 1 && v.votes[0].choice === pair.expected) right++
      }
      // proof of capability on the layers it serves: challenge inputs (from the challenge id) through
      // its stage over the spot-check protocol (CHALLENGE), its outputs checked against this node's
      // own copy of the same layers (consensus/stage-challenge.ts)
      // a judge-only subject (--judge-model: no layers, its record's judgeModel) has no stage to
      // check: it is calibrated on the judging pairs alone (what it does: judge and verify)
      const judgeOnlySubject = found.r.layers.length === 0
      let stage: StageChallengeResult = { passed: false, rows: 0, rowsExact: 0, reason: 'no served range' }
      if (range !== undefined && opened !== undefined) {
        // this node's copy of those layers in the dtype the subject says it serves (its record), so
        // an honest stage of another dtype matches exactly (a last stage's greedy tokens too)
        const mine = await loadShard(opened.source, { start: range.start, end: range.end, dtype: subjectDtype(found.r.capabilities.dtype) ?? opened.dtype, threads: 1 })
        try {
          const input = stageChallenge({ challenge, candidate: subject, start: range.start, end: range.end, dim: mine.config.dim, vocab: mine.config.vocabSize })
          const rows = 'tokens' in input ? input.tokens.length : input.hidden.length / mine.config.dim
          const stream = await host.dialProtocol(peerIdFromString(subject), host.services.spotCheck.protocol)
          const answer = await requestChallenge(stream, { model: manifestId, start: range.start, end: range.end, rows, input }).catch(() => undefined)
          stage = checkStageChallenge(mine, input, answer === undefined ? undefined : 'tokens' in answer ? answer : { hidden: answer.hidden })
          if (answer === undefined) unanswered++
        } finally {
          await mine.close()
        }
      }
      if (unanswered > 0) {
        // no answer (it does not judge — no judge model or no memory for one —, its stage is not
        // served yet, a timeout) is no verdict: nothing is recorded, the subject is retried later
        // and stays unadmitted; only wrong answers make a failed record (`refused` in the ledger)
        log.info({ event: 'calibration-incomplete', subject, unanswered, right, pairs: pairs.length, stage: { range, ...stage } }, `calibration of ${subject}: no answer, retried later`)
        return
      }
      const passed = pairs.length > 0 && right === pairs.length && (stage.passed || judgeOnlySubject)
      if (!passed) tried.set(key(subject), { at: now, failures: failures + 1 })
      // tasks: the stage challenge + the judging pairs; exact: those answered right
      await write({ t: 'calibration', seq: lastSeq(rounds) + 1, subject, model: manifestId, challenge, tasks: pairs.length + (judgeOnlySubject ? 0 : 1), tasksExact: right + (stage.passed && !judgeOnlySubject ? 1 : 0), pairs: pairs.length, pairsRight: right, passed })
      log.info({ event: 'calibration', subject, passed, right, pairs: pairs.length, stage: { range, ...stage } }, `calibrated ${subject}: ${passed ? 'passed' : 'failed'}`)
    } catch (err) {
      log.warn({ event: 'calibration-failed', subject, err: (err as Error).message }, 'calibration did not complete')
    } finally {
      busy = false
    }
  }
  const timer = setInterval(() => { void calibrateOne() }, CALIBRATION_POLL_MS)
  timer.unref()

  return {
    owner: {
      reputation: () => ledger.refresh().state,
      // excluded by a spot-check, or refused by calibration (wrong answers; on `model` when a
      // round asks): neither is routed
      excluded: (peer, model) => ledger.excluded(peer) || ledger.refused(peer, model),
      record: async (id, data) => { await state.recordRound(id, data as never) },
      lastSeq: () => lastSeq(rounds)
    },
    stop: async () => {
      closed = true
      clearInterval(timer)
      service.setJudge(undefined)
      const m = await judgeModel?.catch(() => undefined)
      judgeModel = undefined
      await m?.shard.close()
    }
  }
}

/** A dtype named in a node record's capabilities, when it is one the engine serves. */
function subjectDtype (x: unknown): WeightDType | undefined {
  return x === 'f32' || x === 'f16' || x === 'q8_0' || x === 'q4_0' ? x : undefined
}

const running = new WeakMap<object, ConsensusNode>()

/** The daemon registers its consensus node here; the API's client reads the owner through it. */
export function registerConsensusNode (host: object, node: ConsensusNode): void { running.set(host, node) }

/** A ConsensusHost that asks the host's registered consensus node at call time (the API client is built before). */
export function consensusOwnerOf (host: object): ConsensusHost {
  const owner = (): ConsensusHost => {
    const n = running.get(host)
    if (n === undefined) throw new Error('consensus is not running on this node')
    return n.owner
  }
  return {
    reputation: () => owner().reputation(),
    excluded: (peer, model) => running.get(host)?.owner.excluded?.(peer, model) === true,
    record: async (id, data) => { await owner().record?.(id, data) },
    lastSeq: () => owner().lastSeq?.() ?? 0,
    auditRate: SPOT_AUDIT_RATE
  }
}
