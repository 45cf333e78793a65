// Both llama2.c tokenizers must reproduce llama2.c run.c's encode on the reference cases.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { Llama2cTokenizer } from '../../engine/tokenizer-llama2c.ts'
import { MODELS } from '../models.ts'

const cases = [
  { dir: 'stories260K', file: 'tok512.bin' },
  { dir: 'llama2-tokenizer-32k', file: 'tokenizer.bin' }
]

describe.each(cases)('llama2.c tokenizer $dir', ({ dir, file }) => {
  const ref = JSON.parse(readFileSync(`${MODELS}/${dir}/reference-tokenizer.json`, 'utf8')) as {
    vocab_size: number, cases: Array<{ text: string, ids: number[] }>
  }

  it.each(ref.cases)('encodes $text', async ({ text, ids }) => {
    const tok = await Llama2cTokenizer.fromFile(`${MODELS}/${dir}/${file}`, ref.vocab_size)
    expect(tok.encode(text, { bos: true })).toEqual(ids)
  })

  it('decodes back to the text (after the dummy-prefix space)', async () => {
    const tok = await Llama2cTokenizer.fromFile(`${MODELS}/${dir}/${file}`, ref.vocab_size)
    for (const { text, ids } of ref.cases) expect(tok.decode(ids)).toBe(text)
  })

  it('rejects a vocabulary size that does not match the file', async () => {
    await expect(Llama2cTokenizer.fromFile(`${MODELS}/${dir}/${file}`, ref.vocab_size + 1))
      .rejects.toMatchObject({ name: 'ModelFormatError' })
    await expect(Llama2cTokenizer.fromFile(`${MODELS}/${dir}/${file}`, ref.vocab_size - 1))
      .rejects.toThrow(/vocabulary size does not match/)
  })
})
