// llama2.c checkpoints: the real stories260K header parses to the documented config, and damaged
// files are ModelFormatErrors that name the file and what is wrong.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openLlama2c } from '../../engine/formats/llama2c.ts'
import { STORIES260K } from '../models.ts'

const dir = mkdtempSync(join(tmpdir(), 'mycelium-llama2c-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('llama2.c checkpoint reader', () => {
  it('reads the stories260K header', async () => {
    const src = await openLlama2c(STORIES260K)
    expect(src.config).toMatchObject({ dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headSize: 8, vocabSize: 512, seqLen: 512, tiedEmbeddings: true })
    expect(src.tensors.get('layers.4.w3')?.shape).toEqual([172, 64])
    expect(src.tensors.has('output')).toBe(false)
  })

  it('rejects a truncated file, naming it', async () => {
    const f = join(dir, 'truncated.bin')
    copyFileSync(STORIES260K, f)
    truncateSync(f, 500_000)
    await expect(openLlama2c(f)).rejects.toMatchObject({ name: 'ModelFormatError', message: expect.stringContaining(f) })
    await expect(openLlama2c(f)).rejects.toThrow(/truncated/)
  })

  it('rejects a header that is not a config', async () => {
    const f = join(dir, 'garbage.bin')
    const bytes = readFileSync(STORIES260K)
    bytes.writeInt32LE(7, 12) // n_heads 7 does not divide dim 64
    writeFileSync(f, bytes)
    await expect(openLlama2c(f)).rejects.toThrow(/not a valid llama2.c config/)
  })

  it('rejects a file shorter than a header and a missing file', async () => {
    const f = join(dir, 'tiny.bin')
    writeFileSync(f, Buffer.alloc(10))
    await expect(openLlama2c(f)).rejects.toMatchObject({ name: 'ModelFormatError' })
    await expect(openLlama2c(join(dir, 'nope.bin'))).rejects.toMatchObject({ name: 'ModelFormatError' })
  })

  it('rejects v2 (int8) checkpoints with advice', async () => {
    const f = join(dir, 'v2.bin')
    const h = Buffer.alloc(256)
    h.writeUInt32LE(0x616b3432, 0)
    h.writeInt32LE(2, 4)
    writeFileSync(f, h)
    await expect(openLlama2c(f)).rejects.toThrow(/v2 \(int8\) checkpoints are not supported/)
  })
})

describe('llama2.c v1 (versioned float32) checkpoints', () => {
  it('stories260K re-exported as v1 gives the legacy file\'s weights and tokens', async () => {
    const legacy = await openLlama2c(STORIES260K)
    const c = legacy.config
    const bytes = readFileSync(STORIES260K)
    const tensor = (name: string) => {
      const t = legacy.tensors.get(name)!
      return bytes.subarray(t.offset, t.offset + t.byteLength)
    }
    const perLayer = (n: string) => Array.from({ length: c.nLayers }, (_, l) => tensor(`layers.${l}.${n}`))
    // export.py version1_export: header, then norms, embedding, then each weight kind for all layers.
    const header = Buffer.alloc(256)
    header.writeUInt32LE(0x616b3432, 0)
    header.writeInt32LE(1, 4)
    ;[c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.seqLen].forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i))
    header[36] = 1 // shared classifier
    const parts = [header, ...perLayer('attention_norm'), ...perLayer('ffn_norm'), tensor('norm'), tensor('tok_embeddings'),
      ...['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'].flatMap(perLayer)]
    const f = join(dir, 'v1.bin')
    writeFileSync(f, Buffer.concat(parts))
    const v1 = await openLlama2c(f)
    expect(v1.config).toEqual(c)
    for (const [name, t] of legacy.tensors) {
      const u = v1.tensors.get(name)!
      expect(readFileSync(f).subarray(u.offset, u.offset + u.byteLength)).toEqual(bytes.subarray(t.offset, t.offset + t.byteLength))
    }
    truncateSync(f, 300_000)
    await expect(openLlama2c(f)).rejects.toThrow(/truncated or not a llama2.c v1 checkpoint/)
  })
})
