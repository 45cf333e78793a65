// openModel picks the format from what is on disk; convert-model moves stories260K between all
// three formats value-exactly (with an equivalent tokenizer); gen-model writes shapes that open
// with the right config in every format, with one synthetic vocabulary that encodes the same
// everywhere.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openModel, openTokenizer } from '../../../engine/formats/open-model.ts'
import { convertModel } from '../../../scripts/convert-model.ts'
import { genModel } from '../../../scripts/gen-model.ts'
import { MODEL_SHAPES } from '../../../scripts/model-shapes.ts'
import { MODELS, STORIES260K, TOK512 } from '../../models.ts'
import { expectFormatError, readAllTensors, tempDir } from './fixtures.ts'

const tmp = tempDir('open-model')
afterAll(tmp.cleanup)

const reference = JSON.parse(readFileSync(`${MODELS}/stories260K/reference-tokenizer.json`, 'utf8')) as { cases: Array<{ text: string, ids: number[] }> }

describe('openModel', () => {
  it('opens a llama2.c checkpoint with an explicit tokenizer, or finds tok{vocab}.bin beside it', async () => {
    const a = await openModel(STORIES260K, { tokenizer: TOK512 })
    expect(a).toMatchObject({ format: 'llama2c', tokenizer: { kind: 'llama2c', path: TOK512 } })
    const dir = join(tmp.dir, 'l2c')
    mkdirSync(dir)
    copyFileSync(STORIES260K, join(dir, 'model.bin'))
    expect((await openModel(join(dir, 'model.bin'))).tokenizer).toBeUndefined()
    await expect(openTokenizer(await openModel(join(dir, 'model.bin')))).rejects.toThrow(/no tokenizer: pass a tokenizer.bin/)
    copyFileSync(TOK512, join(dir, 'tok512.bin'))
    const b = await openModel(join(dir, 'model.bin'))
    expect(b.tokenizer).toEqual({ kind: 'llama2c', path: join(dir, 'tok512.bin') })
    expect((await openTokenizer(b)).encode('Once upon a time')).toEqual(reference.cases[0].ids)
  })

  it('says clearly when nothing matches', async () => {
    const missing = join(tmp.dir, 'nope.bin')
    await expectFormatError(openModel(missing), missing, /cannot open model/)
    const empty = join(tmp.dir, 'empty-dir')
    mkdirSync(empty)
    await expectFormatError(openModel(empty), empty, /directory without config.json/)
    const junk = join(tmp.dir, 'junk.bin')
    writeFileSync(junk, Buffer.from('this is neither GGUF nor llama2.c, just text that goes on a while'))
    await expectFormatError(openModel(junk), junk, /not a valid llama2.c config|llama2.c/)
  })
})

describe('convert-model: stories260K through every format', () => {
  const hf = join(tmp.dir, 'stories260K-hf')
  const gguf = join(tmp.dir, 'stories260K.gguf')
  const back = join(tmp.dir, 'back', 'stories260K.bin')

  it('llama2.c → HF → GGUF → llama2.c keeps every tensor bit for bit', async () => {
    const original = await openModel(STORIES260K, { tokenizer: TOK512 })
    const want = readAllTensors(original)
    await convertModel({ model: STORIES260K, tokenizer: TOK512, to: 'hf', out: hf })
    await convertModel({ model: hf, to: 'gguf', out: gguf }).catch((err: Error) => {
      expect(err.message).toMatch(/--to gguf needs a SentencePiece vocabulary/) // HF → GGUF has no SPM vocabulary
    })
    await convertModel({ model: STORIES260K, tokenizer: TOK512, to: 'gguf', out: gguf })
    await convertModel({ model: gguf, to: 'llama2c', out: back })
    for (const path of [hf, gguf, back]) {
      const src = await openModel(path)
      expect(src.config, path).toEqual(original.config)
      const got = readAllTensors(src)
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
      for (const [name, values] of want) expect(got.get(name), `${path} ${name}`).toEqual(values)
    }
    // Tensors and tokenizer.bin (written beside) are byte-identical; only the unused freq_cis differ in rounding.
    expect(readFileSync(back).subarray(0, 1040156).equals(readFileSync(STORIES260K).subarray(0, 1040156))).toBe(true)
    expect(readFileSync(join(tmp.dir, 'back', 'tok512.bin')).equals(readFileSync(TOK512))).toBe(true)
  })

  it('the converted tokenizers encode the reference prompts exactly like llama2.c', async () => {
    for (const path of [hf, gguf]) {
      const tok = await openTokenizer(await openModel(path))
      for (const { text, ids } of reference.cases) expect(tok.encode(text, { bos: true }), `${path}: ${text}`).toEqual(ids)
    }
  })

  it('quantizes on the way to GGUF', async () => {
    const q8 = join(tmp.dir, 'stories260K-q8_0.gguf')
    await convertModel({ model: STORIES260K, tokenizer: TOK512, to: 'gguf', out: q8, dtype: 'q8_0' })
    const src = await openModel(q8)
    expect(src.tensors.get('layers.0.wq')?.dtype).toBe('q8_0')
    expect(src.tensors.get('layers.0.w2')?.dtype).toBe('f32') // 172 columns: not whole 32-blocks
  })
})

describe('gen-model', () => {
  it.each([
    ['gguf', 'q4_0', 'model.gguf'],
    ['hf', 'bf16', 'hf'],
    ['llama2c', 'f32', 'model.bin']
  ] as const)('writes stories15M (1 layer) as %s %s', async (format, dtype, name) => {
    const out = join(tmp.dir, `gen-${format}`, name)
    const path = await genModel({ shape: 'stories15M', format, dtype, out, layers: 1, seed: 7 })
    const src = await openModel(path)
    const s = MODEL_SHAPES.stories15M
    expect(src.config).toMatchObject({ dim: s.dim, hiddenDim: s.hiddenDim, nLayers: 1, nHeads: s.nHeads, vocabSize: s.vocabSize, tiedEmbeddings: true })
    // The same synthetic vocabulary behind every format, so the same ids (llama.cpp agrees on
    // 'Hello world' → 293 611 1090 282 1297 1079 for the GGUF; checked by hand with node-llama-cpp).
    const tok = await openTokenizer(src)
    expect(tok.encode('Hello world, 123!')).toEqual([1, 293, 611, 1090, 282, 1297, 31944, 595, 313, 4055, 31997])
  })
})
