// A consensus judge's check of the answers an owner sends (issue 7: the text judged is the text the
// last stage signed). Each answer comes with its author's receipt — the tokens, the session, the
// first sampled position, the sampling and the signature (protocols/inference/frame-signature.ts
// receiptMessage) — and its id must be the receipt's (consensus/answer-receipts.ts receiptAnswerId).
// The judge judges its own decoding of the tokens, and only when the owner's text is exactly that.
import type { Tokenizer } from '../../engine/index.ts'
import { decodeAnswer, receiptAnswerId } from '../../consensus/answer-receipts.ts'
import { toHex } from '../../consensus/digest.ts'
import { signedMessage, verifyPeer } from '../../consensus/signed-frames.ts'
import { receiptContent, receiptSampling } from '../inference/frame-signature.ts'

/** An answer as the owner sends it to a judge. */
export interface ReceiptedAnswer {
  id: string
  /** The answer's author (its chain's last stage): the receipt's signer. */
  author: string
  tokens: readonly number[]
  session: string
  /** Position of the logits the first token was sampled from (the receipt's position). */
  first: number
  /** The sampling the receipt binds (undefined: greedy defaults). */
  sampling?: { temperature?: number, topP?: number, topK?: number, seed?: number, skipDraws?: number }
  /** The author's receipt signature (empty: none). */
  receipt: Uint8Array
}

/** Why `answer` does not check in `round` (undefined: its id is its receipt's and the author signed it). */
export function answerReceiptProblem (round: string, answer: ReceiptedAnswer): string | undefined {
  if (answer.receipt.length === 0) return 'no receipt'
  if (answer.session === '' || !Number.isSafeInteger(answer.first) || answer.first < 0) return 'no receipt session'
  const seed = answer.sampling?.seed ?? 1
  if (!Number.isSafeInteger(seed) || seed < 0) return 'sampling seed is not an integer'
  const content = receiptContent(answer.tokens, receiptSampling(answer.sampling))
  if (answer.id !== receiptAnswerId(round, answer.session, toHex(content))) return 'id is not the receipt\'s'
  if (!verifyPeer(answer.author, signedMessage('receipt', answer.session, answer.first, content), answer.receipt)) return 'receipt not signed by the author'
  return undefined
}

/**
 * The text a judge judges for `answer` of a consensus round: its own decoding of the receipted
 * tokens after `prompt` (encoded with the judge's tokenizer), when the receipt checks and the text
 * the owner sent is that decoding; undefined otherwise (the judge refuses the request UNVERIFIED).
 */
export function verifiedAnswerText (tokenizer: Pick<Tokenizer, 'decodeTokenBytes' | 'encode'>, round: string, prompt: string, answer: ReceiptedAnswer & { text: string }): string | undefined {
  if (answerReceiptProblem(round, answer) !== undefined) return undefined
  const p = tokenizer.encode(prompt, { bos: true })
  const text = decodeAnswer(tokenizer, p[p.length - 1] ?? 0, answer.tokens)
  return text === answer.text ? text : undefined
}
