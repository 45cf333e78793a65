// Tokenizers built from other formats must encode exactly like llama2.c: the GGUF tokenizer read
// from a GGUF written from tokenizer.bin, and the HF tokenizer over the tokenizer.json derived
// from it (BPE merges from scores). HF decoding streams whole characters only.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { spmVocabMetadata, writeGguf } from '../../../engine/formats/gguf-writer.ts'
import { writeLlama2cTokenizer } from '../../../engine/formats/llama2c-writer.ts'
import { HfTokenizer, tokenizerConfigFromSpm, tokenizerJsonFromSpm } from '../../../engine/tokenizer-hf.ts'
import { loadGgufTokenizer, readGgufVocab, readLlama2cVocab } from '../../../engine/tokenizer-gguf.ts'
import { Llama2cTokenizer } from '../../../engine/tokenizer-llama2c.ts'
import type { Tokenizer } from '../../../engine/index.ts'
import { MODELS } from '../../models.ts'
import { seededRandom, testSeed } from '../../seed.ts'
import { expectFormatError, tempDir } from './fixtures.ts'
import { createTextStream } from '../../../engine/text-stream.ts'

const seed = testSeed()
const tmp = tempDir('tokenizers')
afterAll(tmp.cleanup)

interface Reference { vocab_size: number, cases: Array<{ text: string, ids: number[] }> }

const vocabs = [
  { name: 'stories260K', file: 'tok512.bin' },
  { name: 'llama2-tokenizer-32k', file: 'tokenizer.bin' }
]

/** Streams ids[1..] through a text stream and concatenates, as a generation loop prints them. */
function streamed (tok: Tokenizer, ids: number[]): { text: string, pieces: string[] } {
  const stream = createTextStream(tok)
  const pieces = ids.slice(1).map((id, i) => stream.push(ids[i], id))
  pieces.push(stream.flush())
  return { text: pieces.join(''), pieces }
}

describe.each(vocabs)(`SentencePiece vocabulary $name (TEST_SEED=${seed})`, ({ name, file }) => {
  const ref = JSON.parse(readFileSync(`${MODELS}/${name}/reference-tokenizer.json`, 'utf8')) as Reference
  const bin = `${MODELS}/${name}/${file}`

  it('GGUF written from tokenizer.bin reproduces llama2.c encode and decode', async () => {
    const vocab = await readLlama2cVocab(bin, ref.vocab_size)
    const gguf = join(tmp.dir, `${name}.gguf`)
    await writeGguf(gguf, spmVocabMetadata(vocab), [])
    expect((await readGgufVocab(gguf)).pieces).toEqual(vocab.pieces)
    const tok = await loadGgufTokenizer(gguf)
    expect(tok).toMatchObject({ vocabSize: ref.vocab_size, bosId: 1, eosId: 2 })
    for (const { text, ids } of ref.cases) {
      expect(tok.encode(text, { bos: true }), text).toEqual(ids)
      expect(tok.decode(ids)).toBe(text)
    }
  })

  it('tokenizer.bin → SPM vocabulary → tokenizer.bin is byte-identical', async () => {
    const out = join(tmp.dir, `${name}.bin`)
    await writeLlama2cTokenizer(out, await readLlama2cVocab(bin, ref.vocab_size))
    expect(readFileSync(out).equals(readFileSync(bin))).toBe(true)
  })

  it('tokenizer.json derived from the scores reproduces llama2.c encode, decode and streaming', async () => {
    const vocab = await readLlama2cVocab(bin, ref.vocab_size)
    const dir = join(tmp.dir, `${name}-hf`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJsonFromSpm(vocab)))
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigFromSpm(vocab)))
    const tok = await HfTokenizer.fromFile(join(dir, 'tokenizer.json'))
    expect(tok).toMatchObject({ vocabSize: ref.vocab_size, bosId: 1, eosId: 2, addsBos: true })
    for (const { text, ids } of ref.cases) {
      expect(tok.encode(text), text).toEqual(ids)
      expect(tok.encode(text, { bos: false, eos: true })).toEqual([...ids.slice(1), 2])
      expect(tok.decode(ids)).toBe(text)
      expect(streamed(tok, ids).text).toBe(text)
    }
  })

  it('all three agree with llama2.c on seeded random text', async () => {
    const vocab = await readLlama2cVocab(bin, ref.vocab_size)
    const l2c = await Llama2cTokenizer.fromFile(bin, ref.vocab_size)
    const gguf = await loadGgufTokenizer(join(tmp.dir, `${name}.gguf`))
    const hf = new HfTokenizer(tokenizerJsonFromSpm(vocab), tokenizerConfigFromSpm(vocab))
    const words = ['the', 'The', ' ', '  ', 'and', 'Lily', 'dog', 'running', '.', ',', '!', '\n', '\t', 'é', '日本', '😀', 'über', '123', '3.14', "don't", 'Hello', 'ing', 'x', 'qu', 'Ω', '—', '"']
    const rand = seededRandom(seed)
    for (let k = 0; k < 300; k++) {
      let text = ''
      for (let i = Math.floor(rand() * 10); i > 0; i--) text += words[Math.floor(rand() * words.length)] + (rand() < 0.5 ? ' ' : '')
      const want = l2c.encode(text)
      expect(gguf.encode(text), JSON.stringify(text)).toEqual(want)
      expect(hf.encode(text), JSON.stringify(text)).toEqual(want)
      const s = streamed(hf, want)
      expect(s.text).toBe(text)
      for (const p of s.pieces) expect(p).not.toContain('\uFFFD')
    }
  })
})

/** GPT-2's byte → printable character table (bytes_to_unicode). */
function bytesToUnicode (): string[] {
  const table: string[] = []
  let extra = 0
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)
    table.push(String.fromCodePoint(printable ? b : 256 + extra++))
  }
  return table
}

describe('byte-level BPE tokenizer.json (GPT-2 / Qwen style)', () => {
  const chars = bytesToUnicode()
  const vocab: Record<string, number> = Object.fromEntries(chars.map((c, i) => [c, i]))
  const merges: Array<[string, string]> = [[chars[0x68], chars[0x65]], [chars[0x68] + chars[0x65], chars[0x6c]]] // "he", "hel"
  vocab[merges[0].join('')] = 256
  vocab[merges[1].join('')] = 257
  const json = {
    version: '1.0',
    added_tokens: [{ id: 258, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges }
  }
  const tok = new HfTokenizer(json, { eos_token: '<|endoftext|>' })
  const text = 'hello wörld 日本😀 end'

  it('encodes without BOS by default and splits multi-byte characters into byte tokens', () => {
    expect(tok).toMatchObject({ bosId: -1, eosId: 258, addsBos: false, vocabSize: 259 })
    const ids = tok.encode(text)
    expect(ids[0]).toBe(257) // "hel"
    expect(ids.length).toBeGreaterThan([...text].length) // multi-byte characters take several tokens
    expect(tok.decode(ids)).toBe(text)
  })

  it('streams whole characters only, ending with exactly the text', () => {
    const ids = [258, ...tok.encode(text), 258]
    const stream = createTextStream(tok)
    const pieces = ids.slice(1).map((id, i) => stream.push(ids[i], id))
    for (const p of pieces) expect(p).not.toContain('\uFFFD')
    expect(pieces.join('')).toBe(text)
    expect(pieces.filter((p) => p === '').length).toBeGreaterThan(1) // bytes held back mid-character, and EOS
  })
})

describe('tokenizer.json errors', () => {
  it('bad JSON, a missing file and an unsupported model are ModelFormatErrors naming the file', async () => {
    const bad = join(tmp.dir, 'bad.json')
    writeFileSync(bad, '{"model": ')
    await expectFormatError(HfTokenizer.fromFile(bad), bad, /not valid JSON/)
    const missing = join(tmp.dir, 'missing.json')
    await expectFormatError(HfTokenizer.fromFile(missing), missing, /cannot read/)
    const odd = join(tmp.dir, 'odd.json')
    writeFileSync(odd, JSON.stringify({ added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: 'Nope' } }))
    await expectFormatError(HfTokenizer.fromFile(odd), odd, /unsupported tokenizer.json/)
  })

  it('a GGUF without an SPM vocabulary is a ModelFormatError', async () => {
    const f = join(tmp.dir, 'novocab.gguf')
    await writeGguf(f, [{ key: 'tokenizer.ggml.model', type: 8, value: 'gpt2' }], [])
    await expectFormatError(loadGgufTokenizer(f), f, /tokenizer.ggml.model 'gpt2' is not supported/)
  })
})
