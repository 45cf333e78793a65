// GGUF: files written by the GGUF writer read back through openGguf + the tensor reader (f32
// exactly, q8_0 / q4_0 as ggml's reference quantizers' blocks), @huggingface/gguf agrees with our
// header parser, and damaged files are ModelFormatErrors that name the file.
import { existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gguf } from '@huggingface/gguf'
import { afterAll, describe, expect, it } from 'vitest'
import { openGguf, readGgufFile } from '../../../engine/formats/gguf.ts'
import { ggufDtypeFor, llamaGgufMetadata, quantizeQ4_0, quantizeQ8_0, writeGguf, writeGgufModel } from '../../../engine/formats/gguf-writer.ts'
import type { GgufKv } from '../../../engine/formats/gguf-writer.ts'
import { ggufTensorName } from '../../../engine/formats/gguf.ts'
import { modelTensors } from '../../../engine/formats/safetensors-writer.ts'
import { f16ToF32, f32ToF16 } from '../../../engine/quantize.ts'
import type { SourceDType } from '../../../engine/index.ts'
import { syntheticVocab } from '../../../scripts/gen-model.ts'
import { testSeed } from '../../seed.ts'
import { expectFormatError, memoryModel, readAllTensors, tempDir, tinyConfig } from './fixtures.ts'

const seed = testSeed()
const tmp = tempDir('gguf')
afterAll(tmp.cleanup)

const config = tinyConfig()
const vocab = syntheticVocab(config.vocabSize)

async function writeTiny (name: string, dtype: SourceDType, over: { metadata?: GgufKv[], drop?: string } = {}): Promise<{ file: string, model: ReturnType<typeof memoryModel> }> {
  const file = join(tmp.dir, name)
  const model = memoryModel(config, seed)
  if (over.metadata === undefined && over.drop === undefined) {
    await writeGgufModel(file, model, vocab, { dtype })
  } else {
    const tensors = modelTensors(model, ggufTensorName, (s) => ggufDtypeFor(dtype, s), false).filter((t) => t.name !== over.drop)
    await writeGguf(file, over.metadata ?? llamaGgufMetadata(config, vocab, { arch: 'llama', dtype }), tensors)
  }
  return { file, model }
}

describe(`GGUF (TEST_SEED=${seed})`, () => {
  it('round-trips an f32 llama model exactly, with its config', async () => {
    const { file, model } = await writeTiny('f32.gguf', 'f32')
    const src = await openGguf(file)
    expect(src).toMatchObject({ format: 'gguf', config, tokenizer: { kind: 'gguf', path: file } })
    expect(src.tensors.get('layers.0.wq')).toMatchObject({ shape: [64, 64], dtype: 'f32' })
    expect(src.tensors.get('layers.0.wq')?.permuteHeads).toBeUndefined()
    const got = readAllTensors(src)
    expect([...got.keys()].sort()).toEqual([...model.values.keys()].sort())
    for (const [name, values] of model.values) expect(got.get(name), name).toEqual(values)
  })

  it('agrees with @huggingface/gguf on metadata and tensor offsets', async () => {
    const file = join(tmp.dir, 'f32.gguf')
    const ours = await readGgufFile(file)
    const theirs = await gguf(file, { allowLocalFile: true })
    expect(Number(theirs.tensorDataOffset)).toBe(ours.dataStart)
    expect((theirs.metadata as Record<string, unknown>)['llama.embedding_length']).toBe(64)
    for (const t of theirs.tensorInfos) {
      const mine = ours.tensors.get(t.name)
      expect(mine?.offset, t.name).toBe(ours.dataStart + Number(t.offset))
      expect(mine?.ne).toEqual(t.shape.map(Number))
    }
  })

  it('round-trips f16 as the f16 rounding of every value', async () => {
    const { file, model } = await writeTiny('f16.gguf', 'f16')
    const got = readAllTensors(await openGguf(file))
    const w = model.values.get('layers.1.w2') as Float32Array
    expect(got.get('layers.1.w2')).toEqual(w.map((x) => f16ToF32(f32ToF16(x))))
    expect(got.get('norm')).toEqual(model.values.get('norm')) // vectors stay f32
  })

  it.each(['q8_0', 'q4_0'] as const)('stores %s as ggml blocks and reads them back within the quantization error', async (dtype) => {
    const { file, model } = await writeTiny(`${dtype}.gguf`, dtype)
    const src = await openGguf(file)
    const ref = src.tensors.get('layers.0.w3')
    expect(ref).toMatchObject({ dtype, shape: [96, 64], byteLength: 96 * 2 * (dtype === 'q8_0' ? 34 : 18) })
    const x = model.values.get('layers.0.w3') as Float32Array
    const blocks = dtype === 'q8_0' ? quantizeQ8_0(x) : quantizeQ4_0(x)
    const raw = readFileSync(file).subarray(ref?.offset, (ref?.offset ?? 0) + (ref?.byteLength ?? 0))
    expect(Buffer.from(raw)).toEqual(Buffer.from(blocks))
    const y = readAllTensors(src).get('layers.0.w3') as Float32Array
    for (let b = 0; b < x.length / 32; b++) {
      const amax = Math.max(...x.subarray(b * 32, b * 32 + 32).map(Math.abs))
      const bound = dtype === 'q8_0' ? amax / 127 / 2 + 1e-3 * amax : amax / 8 + 1e-3 * amax
      for (let j = 0; j < 32; j++) expect(Math.abs(y[b * 32 + j] - x[b * 32 + j])).toBeLessThanOrEqual(bound)
    }
  })

  it('quantizes known blocks exactly as ggml does', () => {
    const x = Float32Array.from({ length: 32 }, (_, j) => j - 16)
    const q4 = quantizeQ4_0(x) // d = -16 / -8 = 2; nibble = min(15, trunc(x / 2 + 8.5))
    expect([...q4.subarray(0, 4)]).toEqual([0x00, 0x40, 0x80, 0x91])
    expect(q4[17]).toBe(0xf8)
    const q8 = quantizeQ8_0(x) // d = 16 / 127; q = round(x · 127 / 16)
    expect(new DataView(q8.buffer).getUint16(0, true)).toBe(f32ToF16(16 / 127))
    expect([...new Int8Array(q8.buffer, 2, 32)].slice(0, 2)).toEqual([-127, -119])
    expect(new Int8Array(q8.buffer, 2, 32)[31]).toBe(119)
    expect([...quantizeQ8_0(new Float32Array(32))]).toEqual(new Array(34).fill(0))
  })

  it('round-trips a qwen2 model (rotate-half q/k, as llama.cpp stores qwen2)', async () => {
    const qcfg = tinyConfig({ architecture: 'qwen2', qkvBias: true, tiedEmbeddings: true, ropeTheta: 1e6, normEps: 1e-6 })
    const model = memoryModel(qcfg, seed + 2)
    const file = join(tmp.dir, 'qwen2.gguf')
    await writeGgufModel(file, model, vocab)
    const src = await openGguf(file)
    expect(src.config).toEqual(qcfg)
    expect(src.tensors.get('layers.0.wk')?.permuteHeads).toBe(2)
    const got = readAllTensors(src)
    for (const [name, values] of model.values) expect(got.get(name), name).toEqual(values)
  })

  it('a write can be aborted and leaves no file behind', async () => {
    const file = join(tmp.dir, 'aborted.gguf')
    const controller = new AbortController()
    const model = memoryModel(config, seed)
    const slow = { ...model, rows: (name: string, s: number, n: number) => { controller.abort(); return model.rows(name, s, n) } }
    await expect(writeGgufModel(file, slow, vocab, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' })
    expect(existsSync(file) || existsSync(`${file}.partial`)).toBe(false)
    await expect(openGguf(join(tmp.dir, 'f32.gguf'), { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' })
  })

  describe('damage', () => {
    const patched = (name: string, edit: (b: Buffer) => void): string => {
      const b = readFileSync(join(tmp.dir, 'f32.gguf'))
      edit(b)
      const f = join(tmp.dir, name)
      writeFileSync(f, b)
      return f
    }
    /** Byte offset of the ggml type field of a 1-D tensor's info. */
    const typeField = (b: Buffer, tensor: string): number => b.indexOf(Buffer.from(tensor)) + tensor.length + 4 + 8

    it.each([
      ['bad magic', () => patched('magic.gguf', (b) => b.write('GGUX', 0)), /bad magic/],
      ['an unsupported version', () => patched('version.gguf', (b) => b.writeUInt32LE(1, 4)), /unsupported GGUF version 1/],
      ['an impossible kv_count', () => patched('kvcount.gguf', (b) => b.writeBigUInt64LE(1n << 40n, 16)), /kv_count 1099511627776 cannot fit/],
      ['truncated metadata', () => { const f = patched('trunc-meta.gguf', () => {}); truncateSync(f, 2000); return f }, /truncated: /],
      ['tensor data past EOF', () => { const f = patched('trunc-data.gguf', () => {}); truncateSync(f, readFileSync(f).length - 4096); return f }, /tensor .* runs past the end of the \d+-byte file/],
      ['an unknown tensor type', () => patched('type.gguf', (b) => b.writeUInt32LE(99, typeField(b, 'output_norm.weight'))), /tensor output_norm.weight has ggml type #99; supported/],
      ['an unaligned tensor offset', () => patched('align.gguf', (b) => { const at = typeField(b, 'output_norm.weight') + 4; b.writeBigUInt64LE(b.readBigUInt64LE(at) + 4n, at) }), /offset \d+ is not a multiple of the alignment 32/]
    ])('rejects %s, naming the file', async (_what, make, message) => {
      const f = make()
      await expectFormatError(openGguf(f), f, message)
    })

    it('rejects a tensor shape that disagrees with the metadata', async () => {
      const { file } = await writeTiny('shape.gguf', 'f32', { metadata: llamaGgufMetadata({ ...config, hiddenDim: 128 }, vocab, { arch: 'llama', dtype: 'f32' }) })
      await expectFormatError(openGguf(file), file, /tensor blk.0.ffn_gate.weight has shape \[96, 64\], config needs \[128, 64\]/)
    })

    it('rejects a missing tensor', async () => {
      const { file } = await writeTiny('missing.gguf', 'f32', { drop: 'blk.1.ffn_up.weight' })
      await expectFormatError(openGguf(file), file, /missing tensor blk.1.ffn_up.weight/)
    })

    it('rejects unsupported architectures and RoPE scaling', async () => {
      const meta = llamaGgufMetadata(config, vocab, { arch: 'llama', dtype: 'f32' })
      const { file } = await writeTiny('arch.gguf', 'f32', { metadata: meta.map((kv) => kv.key === 'general.architecture' ? { ...kv, value: 'gemma' } : kv) })
      await expectFormatError(openGguf(file), file, /general.architecture 'gemma' is not supported/)
      const scaled = await writeTiny('scaled.gguf', 'f32', { metadata: [...meta, { key: 'llama.rope.scaling.type', type: 8, value: 'linear' }] })
      await expectFormatError(openGguf(scaled.file), scaled.file, /RoPE scaling 'linear' is not supported/)
    })
  })
})
