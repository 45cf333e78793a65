// SentencePiece ("llama") vocabularies as GGUF stores them (tokenizer.ggml.tokens / scores /
// token_type), and the bridge to and from llama2.c's tokenizer.bin. Encoding is llama2.c's
// (Llama2cTokenizer): GGUF pieces use U+2581 for a space, which becomes ' ' here, and control
// pieces (<s>, </s>) are wrapped in newlines as llama2.c's export does, so that no merge of text
// can ever produce them (SentencePiece never merges into control tokens either).
import { ModelFormatError } from './errors.ts'
import { getInt, readGgufFile } from './formats/gguf.ts'
import type { GgufFile } from './formats/gguf.ts'
import type { Tokenizer } from './index.ts'
import { Llama2cTokenizer, readTokenizerBin } from './tokenizer-llama2c.ts'

/** GGUF token types (llama.cpp's llama_token_type). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const

/** A SentencePiece vocabulary; pieces use ' ' (not U+2581) and plain "<s>" / "</s>". */
export interface SpmVocab {
  pieces: string[]
  scores: Float32Array
  types: Int32Array
  bosId: number
  eosId: number
  unkId: number
}

const SPACE_MARK = '\u2581'
const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/

/** Reads the SPM vocabulary of a GGUF file (tokenizer.ggml.model must be 'llama'). */
export async function readGgufVocab (file: string, options: { signal?: AbortSignal } = {}): Promise<SpmVocab> {
  return ggufVocab(await readGgufFile(file, options))
}

export function ggufVocab (g: GgufFile): SpmVocab {
  const { file, metadata } = g
  const model = metadata.get('tokenizer.ggml.model')
  if (model === undefined) throw new ModelFormatError(file, 'has no tokenizer (tokenizer.ggml.model is missing)')
  if (model !== 'llama') throw new ModelFormatError(file, `tokenizer.ggml.model '${String(model)}' is not supported (supported: llama / SentencePiece); pass the model's tokenizer.json instead (--tokenizer)`)
  const tokens = metadata.get('tokenizer.ggml.tokens')
  if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === 'string')) throw new ModelFormatError(file, 'tokenizer.ggml.tokens is missing or not a string array')
  const n = tokens.length
  const scores = metadata.get('tokenizer.ggml.scores')
  if (!(scores instanceof Float32Array) || scores.length !== n) throw new ModelFormatError(file, `tokenizer.ggml.scores is missing or not ${n} f32 values`)
  const rawTypes = metadata.get('tokenizer.ggml.token_type') ?? new Int32Array(n).fill(TokenType.NORMAL)
  if (!(rawTypes instanceof Int32Array) || rawTypes.length !== n) throw new ModelFormatError(file, `tokenizer.ggml.token_type is not ${n} i32 values`)
  const id = (key: string, fallback: number): number => {
    const v = getInt(g, key, fallback)
    if (v >= n) throw new ModelFormatError(file, `${key} ${v} is outside the ${n}-token vocabulary`)
    return v
  }
  return {
    pieces: (tokens as string[]).map((t) => t.replaceAll(SPACE_MARK, ' ')),
    scores,
    types: rawTypes,
    bosId: id('tokenizer.ggml.bos_token_id', 1),
    eosId: id('tokenizer.ggml.eos_token_id', 2),
    unkId: id('tokenizer.ggml.unknown_token_id', 0)
  }
}

/** A llama2.c-exact tokenizer over the SPM vocabulary of a GGUF file. */
export async function loadGgufTokenizer (file: string, options: { signal?: AbortSignal } = {}): Promise<Tokenizer> {
  return spmTokenizer(await readGgufVocab(file, options))
}

/** Llama2cTokenizer over an SPM vocabulary (control pieces wrapped in newlines, as llama2.c's export). */
export function spmTokenizer (vocab: SpmVocab): Llama2cTokenizer {
  const pieces = vocab.pieces.map((p, i) =>
    vocab.types[i] === TokenType.CONTROL || i === vocab.bosId || i === vocab.eosId ? `\n${p}\n` : p)
  return new Llama2cTokenizer(pieces, vocab.scores, { bosId: vocab.bosId, eosId: vocab.eosId })
}

/**
 * Reads a llama2.c tokenizer.bin as an SPM vocabulary: int32 max_token_length, then per token a
 * f32 score, an int32 byte length and the UTF-8 bytes. BOS/EOS ("\n<s>\n", "\n</s>\n") become
 * plain control pieces, <0xXX> pieces byte pieces, id 0 the unknown piece.
 */
export async function readLlama2cVocab (file: string, vocabSize: number): Promise<SpmVocab> {
  const { pieces, scores } = await readTokenizerBin(file, vocabSize)
  return spmVocabFromPieces(pieces, scores, { bosId: 1, eosId: 2, unkId: 0 })
}

/** Types and normalised control pieces for llama2.c-style pieces. */
export function spmVocabFromPieces (pieces: string[], scores: Float32Array, ids: { bosId: number, eosId: number, unkId: number }): SpmVocab {
  const types = new Int32Array(pieces.length)
  const out = pieces.map((p, i) => {
    if (i === ids.bosId || i === ids.eosId) {
      types[i] = TokenType.CONTROL
      return p.trim()
    }
    types[i] = i === ids.unkId ? TokenType.UNKNOWN : BYTE_PIECE.test(p) ? TokenType.BYTE : TokenType.NORMAL
    return p
  })
  return { pieces: out, scores, types, ...ids }
}

/** GGUF's spelling of a piece: U+2581 for each space. */
export function ggufPiece (piece: string): string {
  return piece.replaceAll(' ', SPACE_MARK)
}
