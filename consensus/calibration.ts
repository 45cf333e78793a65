// Admission by calibration (proof of capability). A verifier that is already admitted challenges a
// candidate with tasks derived from a fresh challenge id (so nothing can be precomputed):
// (1) known-answer generation: BOS + random token prompts, whose exact greedy continuations on
// the claimed model the verifier computes itself with the engine — the candidate must return
// every one exactly; (2) known-answer judging: pairs of (the model's own greedy continuation, a
// scrambled copy), in a seeded order, that a working judge on that model must get right.
// A passing result becomes a calibration record (records.ts); until one from an admitted verifier
// exists, the identity has no weight, and a fresh identity (whitewashing) starts over here.
import { createSampler, generate, type LogitStepper } from '../engine/index.ts'
import { CALIBRATION_MIN_PAIR_ACCURACY } from './constants.ts'
import { seededRng } from './digest.ts'
import { ConsensusInputError } from './errors.ts'
import type { Choice } from './index.ts'

const CALIBRATION_DOMAIN = 'mycelium/consensus/calibration/1'

export interface CalibrationTask {
  /** BOS then random tokens. */
  prompt: number[]
  /** Tokens to generate greedily. */
  tokens: number
}

export interface ChallengeOptions {
  /** The challenge id (fresh per candidate and attempt) and the candidate's id. */
  challenge: string
  candidate: string
  vocab: number
  bosId: number
  tasks: number
  promptTokens: number
  tokens: number
}

/** The generation tasks of a challenge: the same on every node, unknown before the challenge id. */
export function calibrationTasks (options: ChallengeOptions): CalibrationTask[] {
  const rng = seededRng([CALIBRATION_DOMAIN, 'tasks', options.challenge, options.candidate])
  if (options.vocab < 4) throw new ConsensusInputError('vocabulary too small to calibrate')
  const out: CalibrationTask[] = []
  for (let t = 0; t < options.tasks; t++) {
    const prompt = [options.bosId]
    // Skip ids 0–2 (unk, BOS, EOS in llama tokenizers).
    for (let i = 0; i < options.promptTokens; i++) prompt.push(3 + Math.floor(rng() * (options.vocab - 3)))
    out.push({ prompt, tokens: options.tokens })
  }
  return out
}

/** Exact greedy continuation of a task on any logit stepper (a session, a local pipeline). */
export async function greedyContinuation (stepper: LogitStepper, task: CalibrationTask, bosId: number): Promise<number[]> {
  const out: number[] = []
  for await (const event of generate(stepper, { prompt: task.prompt, steps: task.prompt.length + task.tokens, sampler: createSampler(), bosId })) {
    if (event.type === 'token' && !event.forced) out.push(event.id)
  }
  return out
}

/** A judging pair whose answer is known: `good` is the model's continuation, `bad` a scramble. */
export interface KnownPair {
  prompt: number[]
  first: number[]
  second: number[]
  expected: Choice
}

/** Pairs from the reference continuations, each good answer against a seeded scramble of itself. */
export function knownPairs (challenge: string, candidate: string, tasks: readonly CalibrationTask[], references: readonly number[][], vocab: number): KnownPair[] {
  const rng = seededRng([CALIBRATION_DOMAIN, 'pairs', challenge, candidate])
  const pairs: KnownPair[] = []
  tasks.forEach((task, i) => {
    const good = references[i]
    if (good === undefined || good.length === 0) return
    // Scramble: reverse, then replace a third of the tokens with random ones.
    const bad = [...good].reverse().map((t) => rng() < 1 / 3 ? 3 + Math.floor(rng() * (vocab - 3)) : t)
    const goodFirst = rng() < 0.5
    pairs.push({ prompt: task.prompt, first: goodFirst ? good : bad, second: goodFirst ? bad : good, expected: goodFirst ? 'first' : 'second' })
  })
  return pairs
}

export interface CalibrationResult {
  tasks: number
  tasksExact: number
  pairs: number
  pairsRight: number
  passed: boolean
}

/** Grades a candidate: every continuation exact, and enough known pairs judged right. */
export function gradeCalibration (references: readonly number[][], answers: readonly number[][], pairs: readonly KnownPair[], verdicts: readonly Choice[], minPairAccuracy: number = CALIBRATION_MIN_PAIR_ACCURACY): CalibrationResult {
  let tasksExact = 0
  references.forEach((ref, i) => {
    const got = answers[i]
    if (got !== undefined && got.length === ref.length && got.every((t, j) => t === ref[j])) tasksExact++
  })
  let pairsRight = 0
  pairs.forEach((p, i) => { if (verdicts[i] === p.expected) pairsRight++ })
  const passed = references.length > 0 && tasksExact === references.length && pairsRight >= minPairAccuracy * pairs.length
  return { tasks: references.length, tasksExact, pairs: pairs.length, pairsRight, passed }
}
