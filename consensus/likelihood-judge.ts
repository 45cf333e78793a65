// The likelihood judge: scores an answer by its mean token log-probability under the judge's own
// model given the prompt, and prefers the higher score. Works with any language model (no
// instruction following), scores each answer on its own (so it has no position bias) and is
// deterministic: greedy arithmetic over the engine's logits. The log-softmax uses Math.exp/log,
// which are the same on every node running the same Node release; a judge's verdicts are
// committed as votes, so other nodes never need to recompute them bit for bit (calibration
// compares verdicts, not scores).
import type { Shard } from '../engine/index.ts'
import { ConsensusInputError } from './errors.ts'
import type { Choice } from './index.ts'

/** Logits of every position of `tokens`: [tokens.length, vocab]. */
export type LogitsOf = (tokens: number[]) => Float32Array

/** All-position logits from a whole-model shard (first and last stage), one fresh session per call. */
export function shardLogits (shard: Shard): LogitsOf {
  if (!shard.isFirst || !shard.isLast) throw new ConsensusInputError('the likelihood judge needs a whole-model shard')
  return (tokens) => {
    const session = shard.openSession({ maxLength: tokens.length })
    try {
      return session.step({ tokens }, { logits: 'all' }).logits as Float32Array
    } finally {
      session.close()
    }
  }
}

/** Mean log P(answer[i] | prompt, answer[<i]); `prompt` starts with BOS. */
export function meanLogProb (logitsOf: LogitsOf, vocab: number, prompt: readonly number[], answer: readonly number[]): number {
  if (prompt.length === 0) throw new ConsensusInputError('the prompt needs at least one token (BOS)')
  if (answer.length === 0) return -Infinity
  const tokens = [...prompt, ...answer]
  const logits = logitsOf(tokens)
  if (logits.length !== tokens.length * vocab) throw new ConsensusInputError(`expected ${tokens.length} × ${vocab} logits, got ${logits.length}`)
  let total = 0
  for (let i = 0; i < answer.length; i++) {
    const off = (prompt.length - 1 + i) * vocab
    let max = -Infinity
    for (let v = 0; v < vocab; v++) if (logits[off + v] > max) max = logits[off + v]
    let sum = 0
    for (let v = 0; v < vocab; v++) sum += Math.exp(logits[off + v] - max)
    total += logits[off + answer[i]] - max - Math.log(sum)
  }
  return total / answer.length
}

export interface LikelihoodJudgeOptions {
  logitsOf: LogitsOf
  vocab: number
  /** Scores closer than this (nats per token) are a tie. Default 0. */
  margin?: number
}

/** A judge over token ids: which of two answers to `prompt` its model finds more likely. */
export function likelihoodJudge (options: LikelihoodJudgeOptions): (prompt: number[], first: number[], second: number[]) => Choice {
  const margin = options.margin ?? 0
  return (prompt, first, second) => {
    const a = meanLogProb(options.logitsOf, options.vocab, prompt, first)
    const b = meanLogProb(options.logitsOf, options.vocab, prompt, second)
    if (a > b + margin) return 'first'
    if (b > a + margin) return 'second'
    return 'tie'
  }
}
