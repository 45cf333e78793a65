// What judges judge is what the last stage signed (issue 7). A consensus answer is the token ids
// its chain's last stage sampled in one session, with that stage's receipt: its Ed25519 signature
// over (session, first sampled position, content), content = SHA-256 of the tokens' hash and the
// sampling they were drawn with (protocols/inference/frame-signature.ts receiptContent). The
// answer's id is derived from the receipt's session and content hash:
//
//   id = hex(SHA-256(len-prefixed "mycelium/consensus/answer/1", round, session, hex content))[0:16]
//
// so a judge's vote on an id is a vote on exactly those tokens. A judge checks each answer it is
// sent (protocols/consensus/answer-check.ts: the id is the receipt's, the answer's author signed
// it, the text is the judge's own decoding of the tokens) and refuses the request otherwise; every
// ledger credits a win only when the winning id is the one the record's receipt content gives
// (consensus/ledger.ts). An owner therefore cannot pair an accomplice's valid receipt with another
// chain's text: the judges refuse it, and a record that claims it credits nobody.
import type { Tokenizer } from '../engine/index.ts'
import { createTextStream } from '../engine/index.ts'
import { digestFields, toHex } from './digest.ts'

/** The id of the answer whose receipt signs content `contentHex` (hex) in `session`, in `round`. */
export function receiptAnswerId (round: string, session: string, contentHex: string): string {
  return toHex(digestFields(['mycelium/consensus/answer/1', round, session, contentHex])).slice(0, 16)
}

/** The text of generated `tokens` after the prompt's last token `prev` (what the owner streams: engine createTextStream). */
export function decodeAnswer (tokenizer: Pick<Tokenizer, 'decodeTokenBytes'>, prev: number, tokens: readonly number[]): string {
  const stream = createTextStream(tokenizer as Tokenizer)
  let text = ''
  for (const t of tokens) { text += stream.push(prev, t); prev = t }
  return text + stream.flush()
}
