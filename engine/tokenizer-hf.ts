// Hugging Face tokenizer.json through @huggingface/tokenizers, behind the engine's Tokenizer.
// Encoding is the library's (special tokens are added by us, per `bos` / `eos`). Decoding is
// done on bytes: each token maps to the bytes it stands for (byte-level BPE's printable-char
// alphabet, <0xXX> byte-fallback pieces, U+2581 word marks), and `decodeToken` only ever returns
// whole UTF-8 characters — the trailing bytes of a character split across tokens are held back
// until the token that completes it — so a stream of decodeToken results concatenates to
// exactly `decode(ids)` and never prints broken characters.
// Also builds tokenizer.json for a SentencePiece vocabulary (tokenizer.bin / GGUF), in the shape
// of Hugging Face's Llama tokenizer, with BPE merges derived from the piece scores.
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers'
import { ModelFormatError } from './errors.ts'
import type { Tokenizer } from './index.ts'
import { TokenType } from './tokenizer-gguf.ts'
import type { SpmVocab } from './tokenizer-gguf.ts'

const SPACE_MARK = '\u2581'
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/

export interface HfTokenizerOptions {
  bosId?: number // default: tokenizer_config.json's bos_token, else the post-processor's first special token
  eosId?: number // default: tokenizer_config.json's eos_token
}

/** How tokenizer.json's decoder turns pieces into text. */
interface DecodeRules {
  byteLevel: boolean // GPT-2 byte-to-unicode alphabet
  byteFallback: boolean // <0xXX> pieces are raw bytes
  spaceMark?: string // replaced by ' ' (SentencePiece's U+2581)
  stripFirstSpace: boolean // the first token's leading space is dropped (after BOS)
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number
  readonly bosId: number
  readonly eosId: number
  /** Whether `encode` adds BOS when not told (what the tokenizer's own post-processor does). */
  readonly addsBos: boolean
  private readonly lib: HfLibTokenizer
  private readonly file: string
  private readonly rules: DecodeRules
  private readonly special = new Set<number>()
  private readonly bytesCache = new Map<number, Uint8Array>()
  private readonly utf8 = new TextDecoder('utf-8')

  /** `json` is the parsed tokenizer.json, `config` the parsed tokenizer_config.json (or {}). */
  constructor (json: Record<string, unknown>, config: Record<string, unknown> = {}, options: HfTokenizerOptions = {}, file = 'tokenizer.json') {
    try {
      this.lib = new HfLibTokenizer(json, config)
    } catch (err) {
      throw new ModelFormatError(file, `unsupported tokenizer.json: ${(err as Error).message}`)
    }
    this.file = file
    let maxId = -1
    try {
      for (const id of this.lib.get_vocab(true).values()) maxId = Math.max(maxId, id)
      for (const [id, t] of this.lib.get_added_tokens_decoder()) if (t.special) this.special.add(id)
      // The library checks its pipeline lazily: a damaged normalizer, pre-tokenizer or
      // post-processor only fails on first use. Run every stage once now so a bad file is a
      // ModelFormatError at load time, not a TypeError in the middle of a request.
      this.lib.encode('Probe 1, naïve.', { add_special_tokens: true })
    } catch (err) {
      throw new ModelFormatError(file, `unsupported tokenizer.json: ${(err as Error).message}`, { cause: err })
    }
    this.vocabSize = maxId + 1
    this.rules = decodeRules(json.decoder)
    const template = templateFirstSpecial(json.post_processor)
    this.bosId = options.bosId ?? this.idOf(config.bos_token) ?? this.idOf(template) ?? -1
    this.eosId = options.eosId ?? this.idOf(config.eos_token) ?? -1
    this.addsBos = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : template !== undefined && this.idOf(template) === this.bosId
  }

  /** Loads tokenizer.json (and tokenizer_config.json beside it, when present). */
  static async fromFile (path: string, options: HfTokenizerOptions = {}): Promise<HfTokenizer> {
    const json = await readJson(path, true) as Record<string, unknown>
    const config = (await readJson(join(dirname(path), 'tokenizer_config.json'), false) ?? {}) as Record<string, unknown>
    return new HfTokenizer(json, config, options, path)
  }

  encode (text: string, options: { bos?: boolean, eos?: boolean } = {}): number[] {
    const { bos = this.addsBos, eos = false } = options
    const ids = text === '' ? [] : this.encodeWithLib(text)
    if (bos && this.bosId >= 0) ids.unshift(this.bosId)
    if (eos && this.eosId >= 0) ids.push(this.eosId)
    return ids
  }

  private encodeWithLib (text: string): number[] {
    try {
      return this.lib.encode(text, { add_special_tokens: false }).ids
    } catch (err) {
      // Only a tokenizer.json the library accepted at load but cannot run gets here.
      throw new ModelFormatError(this.file, `tokenizer failed on input: ${(err as Error).message}`, { cause: err })
    }
  }

  /** The token's text on its own; a piece that is part of a character decodes lossily (U+FFFD). */
  decodeToken (prev: number, token: number): string {
    return this.utf8.decode(this.decodeTokenBytes(prev, token))
  }

  decode (ids: number[]): string {
    const parts = ids.map((id, i) => this.decodeTokenBytes(i === 0 ? this.bosId : ids[i - 1], id))
    return this.utf8.decode(concat(...parts))
  }

  /** The bytes `token` stands for after `prev`; special tokens (BOS, EOS, chat markers) print nothing. */
  decodeTokenBytes (prev: number, token: number): Uint8Array {
    if (this.special.has(token)) return new Uint8Array(0)
    let bytes = this.bytesCache.get(token)
    if (bytes === undefined) {
      bytes = pieceBytes(this.lib.id_to_token(token) ?? '', this.rules)
      this.bytesCache.set(token, bytes)
    }
    if (this.rules.stripFirstSpace && prev === this.bosId && bytes[0] === 0x20) return bytes.subarray(1)
    return bytes
  }

  private idOf (token: unknown): number | undefined {
    const content = typeof token === 'string' ? token : isObject(token) && typeof token.content === 'string' ? token.content : undefined
    return content === undefined ? undefined : this.lib.token_to_id(content)
  }
}

function pieceBytes (piece: string, rules: DecodeRules): Uint8Array {
  if (rules.byteLevel) {
    const table = byteDecoder()
    const out: number[] = []
    for (const ch of piece) {
      const b = table.get(ch)
      if (b !== undefined) out.push(b)
      else out.push(...Buffer.from(ch, 'utf8'))
    }
    return Uint8Array.from(out)
  }
  const m = rules.byteFallback ? BYTE_PIECE.exec(piece) : null
  if (m !== null) return Uint8Array.of(Number.parseInt(m[1], 16))
  const text = rules.spaceMark !== undefined ? piece.replaceAll(rules.spaceMark, ' ') : piece
  return new Uint8Array(Buffer.from(text, 'utf8'))
}

function decodeRules (decoder: unknown): DecodeRules {
  const rules: DecodeRules = { byteLevel: false, byteFallback: false, stripFirstSpace: false }
  const visit = (d: unknown): void => {
    if (!isObject(d)) return
    switch (d.type) {
      case 'Sequence': if (Array.isArray(d.decoders)) d.decoders.forEach(visit); break
      case 'ByteLevel': rules.byteLevel = true; break
      case 'ByteFallback': rules.byteFallback = true; break
      case 'Replace':
        if (isObject(d.pattern) && typeof d.pattern.String === 'string' && d.content === ' ') rules.spaceMark = d.pattern.String
        break
      case 'Metaspace':
        rules.spaceMark = typeof d.replacement === 'string' ? d.replacement : SPACE_MARK
        rules.stripFirstSpace = d.prepend_scheme !== 'never' && d.add_prefix_space !== false
        break
      case 'Strip':
        if (d.content === ' ' && typeof d.start === 'number' && d.start > 0) rules.stripFirstSpace = true
        break
    }
  }
  visit(decoder)
  return rules
}

/** The first special token of a TemplateProcessing post-processor's `single` template, if it starts with one. */
function templateFirstSpecial (pp: unknown): string | undefined {
  if (!isObject(pp)) return undefined
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) {
    for (const p of pp.processors) {
      const found = templateFirstSpecial(p)
      if (found !== undefined) return found
    }
    return undefined
  }
  if (pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) return undefined
  const first: unknown = pp.single[0]
  return isObject(first) && isObject(first.SpecialToken) && typeof first.SpecialToken.id === 'string' ? first.SpecialToken.id : undefined
}

let BYTE_DECODER: Map<string, number> | undefined

/** GPT-2's bytes_to_unicode, inverted: printable stand-in character → byte. */
function byteDecoder (): Map<string, number> {
  if (BYTE_DECODER !== undefined) return BYTE_DECODER
  const table = new Map<string, number>()
  let extra = 0
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
    table.set(String.fromCodePoint(printable ? b : 256 + extra++), b)
  }
  BYTE_DECODER = table
  return table
}

async function readJson (path: string, required: boolean): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ModelFormatError(path, `cannot read: ${(err as Error).message}`)
  }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new ModelFormatError(path, `not valid JSON: ${(err as Error).message}`)
  }
  if (!isObject(v)) throw new ModelFormatError(path, 'is not a JSON object')
  return v
}

function concat (...parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

// ---- tokenizer.json for a SentencePiece vocabulary ----

/**
 * tokenizer.json (Hugging Face's Llama layout: Prepend/Replace U+2581 normalizer, BPE with byte
 * fallback, TemplateProcessing adding <s>) whose encoding equals llama2.c's for `vocab`.
 * llama2.c repeatedly merges the adjacent pair whose concatenation is the best-scoring piece
 * (leftmost on ties); BPE merges the lowest-ranked listed pair (leftmost on ties). So every way
 * of splitting a piece into two pieces becomes a merge, ranked by the piece's score (then id).
 * Control, unknown and byte pieces are never merge results. Known difference: when two different
 * splits of one piece, or two pieces with equal scores, compete in the same text, llama2.c takes
 * the leftmost while BPE takes the lower rank.
 */
export function tokenizerJsonFromSpm (vocab: SpmVocab): Record<string, unknown> {
  const hfPieces = vocab.pieces.map((p) => p.replaceAll(' ', SPACE_MARK))
  const ids = new Map<string, number>()
  hfPieces.forEach((p, i) => { if (!ids.has(p)) ids.set(p, i) })
  const mergeable = (i: number): boolean => vocab.types[i] === TokenType.NORMAL || vocab.types[i] === TokenType.USER_DEFINED
  const targets = hfPieces.map((_, i) => i).filter((i) => mergeable(i) && ids.get(hfPieces[i]) === i)
  targets.sort((a, b) => vocab.scores[b] - vocab.scores[a] || a - b)
  const merges: Array<[string, string]> = []
  for (const id of targets) {
    const chars = Array.from(hfPieces[id])
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('')
      const right = chars.slice(k).join('')
      const l = ids.get(left)
      const r = ids.get(right)
      if (l !== undefined && r !== undefined && !isSpecial(vocab, l) && !isSpecial(vocab, r)) merges.push([left, right])
    }
  }
  const special = (id: number): Record<string, unknown> => ({ id, content: hfPieces[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
  const specialIds = [...new Set([vocab.unkId, vocab.bosId, vocab.eosId])].filter((i) => i >= 0).sort((a, b) => a - b)
  const bos = hfPieces[vocab.bosId]
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specialIds.map(special),
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'Prepend', prepend: SPACE_MARK }, { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK }]
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [vocab.bosId], tokens: [bos] } }
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 }
      ]
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: hfPieces[vocab.unkId],
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(ids),
      merges
    }
  }
}

/** tokenizer_config.json to go with tokenizerJsonFromSpm. */
export function tokenizerConfigFromSpm (vocab: SpmVocab): Record<string, unknown> {
  return {
    tokenizer_class: 'LlamaTokenizerFast',
    bos_token: vocab.pieces[vocab.bosId],
    eos_token: vocab.pieces[vocab.eosId],
    unk_token: vocab.pieces[vocab.unkId],
    add_bos_token: true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    legacy: true
  }
}

function isSpecial (vocab: SpmVocab, id: number): boolean {
  const t = vocab.types[id]
  return t === TokenType.CONTROL || t === TokenType.UNKNOWN
}
