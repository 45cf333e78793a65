// The llama2.c tokenizer (tokenizer.bin): a SentencePiece-style vocabulary of pieces with merge
// scores. `encode` follows llama2.c run.c's `encode` step for step (dummy-prefix space, per-UTF-8
// character lookup with <0xXX> byte fallback, then greedy merges of the best-scoring adjacent
// pair), so token ids match llama2.c exactly. Pieces are handled as byte strings: each byte is
// one UTF-16 code unit (latin1), so concatenation and lookup work on bytes like the C code.
import { readFile } from 'node:fs/promises'
import { ModelFormatError } from './errors.ts'
import type { Tokenizer } from './index.ts'

const MAX_PIECE_BYTES = 4096

export interface Llama2cTokenizerOptions {
  bosId: number
  eosId: number
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosId: number
  readonly eosId: number
  private readonly pieces: string[] // byte strings (one char per byte)
  private readonly scores: Float32Array
  private readonly lookup = new Map<string, number>()
  private readonly bytePieceIds: Int32Array // byte value -> id of its <0xXX> piece, or -1

  /** `pieces` are UTF-8 text (space already in place of U+2581); scores as in tokenizer.bin. */
  constructor (pieces: string[], scores: ArrayLike<number>, options: Llama2cTokenizerOptions) {
    this.vocabSize = pieces.length
    this.bosId = options.bosId
    this.eosId = options.eosId
    this.pieces = pieces.map(toByteString)
    this.scores = Float32Array.from(scores)
    this.bytePieceIds = new Int32Array(256).fill(-1)
    this.pieces.forEach((piece, id) => {
      if (!this.lookup.has(piece)) this.lookup.set(piece, id)
      const byte = parseBytePiece(piece)
      if (byte >= 0 && this.bytePieceIds[byte] < 0) this.bytePieceIds[byte] = id
    })
  }

  /** Reads a llama2.c tokenizer.bin; `vocabSize` comes from the model header. */
  static async fromFile (path: string, vocabSize: number): Promise<Llama2cTokenizer> {
    const { pieces, scores } = await readTokenizerBin(path, vocabSize)
    return new Llama2cTokenizer(pieces, scores, { bosId: 1, eosId: 2 })
  }

  encode (text: string, options: { bos?: boolean, eos?: boolean } = {}): number[] {
    const { bos = true, eos = false } = options
    const tokens: number[] = []
    if (bos) tokens.push(this.bosId)
    const bytes = Buffer.from(text, 'utf8')
    if (bytes.length > 0) {
      const dummy = this.lookup.get(' ')
      if (dummy !== undefined) tokens.push(dummy)
    }
    // One lookup per UTF-8 character; unknown characters fall back to their bytes.
    let start = 0
    while (start < bytes.length) {
      let end = start + 1
      while (end < bytes.length && (bytes[end] & 0xc0) === 0x80 && end - start < 4) end++
      const ch = bytes.toString('latin1', start, end)
      const id = this.lookup.get(ch)
      if (id !== undefined) {
        tokens.push(id)
      } else {
        for (let i = start; i < end; i++) tokens.push(this.byteFallback(bytes[i]))
      }
      start = end
    }
    this.mergePairs(tokens)
    if (eos) tokens.push(this.eosId)
    return tokens
  }

  /** Greedily merges the adjacent pair whose merged piece has the highest score, until none. */
  private mergePairs (tokens: number[]): void {
    for (;;) {
      let bestScore = -1e10
      let bestId = -1
      let bestIdx = -1
      // llama2.c scans the whole sequence, BOS included; a BOS piece never forms a merge.
      for (let i = 0; i < tokens.length - 1; i++) {
        const id = this.lookup.get(this.pieces[tokens[i]] + this.pieces[tokens[i + 1]])
        if (id !== undefined && this.scores[id] > bestScore) {
          bestScore = this.scores[id]
          bestId = id
          bestIdx = i
        }
      }
      if (bestIdx < 0) return
      tokens.splice(bestIdx, 2, bestId)
    }
  }

  private byteFallback (byte: number): number {
    const id = this.bytePieceIds[byte]
    return id >= 0 ? id : byte + 3 // llama2.c's rule: byte pieces start at id 3
  }

  /** The bytes llama2.c's `decode` yields for `token` after `prev` (before safe_printf). */
  decodeTokenBytes (prev: number, token: number): Uint8Array {
    let piece = this.pieces[token] ?? ''
    if (prev === this.bosId && piece.startsWith(' ')) piece = piece.slice(1)
    const byte = parseBytePiece(piece)
    if (byte >= 0) return Uint8Array.of(byte)
    return Buffer.from(piece, 'latin1')
  }

  decodeToken (prev: number, token: number): string {
    return Buffer.from(this.decodeTokenBytes(prev, token)).toString('utf8')
  }

  decode (ids: number[]): string {
    const parts: Uint8Array[] = []
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] === this.bosId || ids[i] === this.eosId) continue
      parts.push(this.decodeTokenBytes(i === 0 ? this.bosId : ids[i - 1], ids[i]))
    }
    return Buffer.concat(parts).toString('utf8')
  }
}

function toByteString (text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1')
}

/** `<0xAB>` → 0xAB, anything else → -1 (llama2.c: sscanf(piece, "<0x%02hhX>")). */
function parseBytePiece (piece: string): number {
  if (piece.length !== 6 || !piece.startsWith('<0x') || piece[5] !== '>') return -1
  const v = Number.parseInt(piece.slice(3, 5), 16)
  return Number.isNaN(v) ? -1 : v
}

/** The pieces (UTF-8 text) and scores of a llama2.c tokenizer.bin with `vocabSize` entries. */
export async function readTokenizerBin (path: string, vocabSize: number): Promise<{ pieces: string[], scores: Float32Array }> {
  let buf: Buffer
  try {
    buf = await readFile(path)
  } catch (err) {
    throw new ModelFormatError(path, `cannot read tokenizer: ${(err as Error).message}`)
  }
  if (buf.length < 4) throw new ModelFormatError(path, 'tokenizer file is shorter than its 4-byte header')
  const maxTokenLength = buf.readInt32LE(0)
  if (maxTokenLength <= 0 || maxTokenLength > MAX_PIECE_BYTES) {
    throw new ModelFormatError(path, `max_token_length ${maxTokenLength} is not a llama2.c tokenizer header`)
  }
  const pieces: string[] = []
  const scores = new Float32Array(vocabSize)
  let off = 4
  for (let id = 0; id < vocabSize; id++) {
    if (off + 8 > buf.length) throw new ModelFormatError(path, `truncated at token ${id} of ${vocabSize} (the model's vocab_size)`)
    scores[id] = buf.readFloatLE(off)
    const len = buf.readInt32LE(off + 4)
    off += 8
    if (len < 0 || len > maxTokenLength || off + len > buf.length) {
      throw new ModelFormatError(path, `token ${id} has invalid length ${len}`)
    }
    pieces.push(buf.toString('utf8', off, off + len))
    off += len
  }
  if (off !== buf.length) {
    throw new ModelFormatError(path, `has ${buf.length - off} bytes after ${vocabSize} tokens: vocabulary size does not match the model`)
  }
  return { pieces, scores }
}
