// Safetensors: what the writer writes the parser reads back bit for bit (F32, F16, BF16), sharded
// sets resolve through the index, and every kind of damage is a ModelFormatError naming the file.
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { openSafetensorsDir, readSafetensorsHeader, safetensorsRef } from '../../../engine/formats/safetensors.ts'
import { encodeFloats, writeSafetensors } from '../../../engine/formats/safetensors-writer.ts'
import type { WritableTensor } from '../../../engine/formats/safetensors-writer.ts'
import { createTensorReader } from '../../../engine/formats/tensor-reader.ts'
import { seededRandom, testSeed } from '../../seed.ts'
import { expectFormatError, tempDir } from './fixtures.ts'

const seed = testSeed()
const tmp = tempDir('safetensors')
afterAll(tmp.cleanup)

function tensor (name: string, shape: number[], dtype: 'f32' | 'f16' | 'bf16', values: Float32Array): WritableTensor {
  const cols = shape[shape.length - 1]
  return { name, shape, dtype, rows: (s, n) => values.slice(s * cols, (s + n) * cols) }
}

/** A raw safetensors file from a header (object or literal text) and a data section. */
function rawFile (name: string, header: unknown, data: Buffer, lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length))
  const file = join(tmp.dir, name)
  writeFileSync(file, Buffer.concat([len, json, data]))
  return file
}

describe(`safetensors (TEST_SEED=${seed})`, () => {
  const rand = seededRandom(seed)
  const a = Float32Array.from({ length: 12 * 40 }, () => rand() * 4 - 2)
  const b = Float32Array.from({ length: 40 }, () => rand() - 0.5)
  const file = join(tmp.dir, 'model.safetensors')

  it('round-trips F32, F16 and BF16 tensors exactly (f16/bf16 as their rounded bits)', async () => {
    await writeSafetensors(file, [
      tensor('a32', [12, 40], 'f32', a), tensor('a16', [12, 40], 'f16', a), tensor('abf', [12, 40], 'bf16', a), tensor('b', [40], 'f32', b)
    ], { metadata: { format: 'pt' } })
    const h = await readSafetensorsHeader(file)
    expect(h.metadata).toEqual({ format: 'pt' })
    expect(h.dataStart % 8).toBe(0)
    const bytes = readFileSync(file)
    for (const [name, dtype] of [['a32', 'f32'], ['a16', 'f16'], ['abf', 'bf16']] as const) {
      const e = h.tensors.get(name)
      expect(e).toMatchObject({ shape: [12, 40], byteLength: 12 * 40 * (dtype === 'f32' ? 4 : 2) })
      const stored = bytes.subarray(e?.offset, (e?.offset ?? 0) + (e?.byteLength ?? 0))
      expect(Buffer.from(stored)).toEqual(Buffer.from(encodeFloats(dtype, a.slice())))
    }
    const reader = createTensorReader()
    expect(reader.readAll(safetensorsRef(h, 'a32', 'x'))).toEqual(a)
    expect(reader.readAll(safetensorsRef(h, 'b', 'x'))).toEqual(b)
    const viaBf16 = reader.readAll(safetensorsRef(h, 'abf', 'x'))
    for (let i = 0; i < a.length; i++) expect(Math.abs(viaBf16[i] - a[i])).toBeLessThanOrEqual(Math.abs(a[i]) / 128)
    reader.close()
  })

  it('resolves a sharded model through model.safetensors.index.json', async () => {
    const dir = join(tmp.dir, 'sharded')
    mkdirSync(dir)
    await writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [tensor('a', [12, 40], 'f32', a)])
    await writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [tensor('b', [40], 'f32', b)])
    const index = join(dir, 'model.safetensors.index.json')
    writeFileSync(index, JSON.stringify({ metadata: {}, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }))
    const set = await openSafetensorsDir(dir)
    expect(set.files.get('a')?.file).toContain('00001')
    expect(set.files.get('b')?.file).toContain('00002')

    writeFileSync(index, JSON.stringify({ weight_map: { a: 'model-00002-of-00002.safetensors' } }))
    await expectFormatError(openSafetensorsDir(dir), index, /puts a in model-00002-of-00002.safetensors, which does not contain it/)
    writeFileSync(index, JSON.stringify({ weight_map: { a: '../model.safetensors' } }))
    await expectFormatError(openSafetensorsDir(dir), index, /not a file beside the index/)
    writeFileSync(index, '{"weight_map": ')
    await expectFormatError(openSafetensorsDir(dir), index, /not valid JSON/)
  })

  const f32 = (n: number): Buffer => Buffer.alloc(4 * n)
  const corrupt: Array<[string, () => string, RegExp]> = [
    ['a file shorter than the length prefix', () => { const f = join(tmp.dir, 'short'); writeFileSync(f, Buffer.alloc(5)); return f }, /shorter than the 8-byte/],
    ['a header length past the end of the file', () => rawFile('len-past-eof', { x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1), 4096n), /header length 4096 runs past the end/],
    ['an absurd header length', () => rawFile('len-huge', {}, Buffer.alloc(0), 1n << 60n), /exceeds the 100000000-byte limit/],
    ['bad JSON', () => rawFile('bad-json', '{"x": [1,', Buffer.alloc(0)), /header is not valid JSON/],
    ['a header that is not an object', () => rawFile('array', [1, 2], Buffer.alloc(0)), /not a JSON object/],
    ['an unknown dtype', () => rawFile('dtype', { x: { dtype: 'Q9', shape: [1], data_offsets: [0, 4] } }, f32(1)), /tensor x: unknown dtype "Q9"/],
    ['a tensor offset past EOF', () => rawFile('offset-eof', { x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32(2)), /tensor x: data_offsets \[0, 16\) run past the end of the file/],
    ['a size that disagrees with shape × dtype', () => rawFile('size', { x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32(2)), /shape \[3\] × F32 needs 12 bytes but data_offsets span 8/],
    ['overlapping tensors', () => rawFile('overlap', { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32(3)), /overlaps/],
    ['a hole between tensors', () => rawFile('hole', { x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, y: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, f32(3)), /unused bytes between/],
    ['trailing bytes', () => rawFile('tail', { x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(2)), /bytes after the last tensor/],
    ['negative / fractional offsets', () => rawFile('neg', { x: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, f32(1)), /is not \[begin, end\]/],
    ['a truncated data section', () => { const f = join(tmp.dir, 'trunc.safetensors'); writeFileSync(f, readFileSync(file)); truncateSync(f, readFileSync(file).length - 10); return f }, /run past the end of the file/]
  ]
  it.each(corrupt)('rejects %s, naming the file', async (_what, make, message) => {
    const f = make()
    await expectFormatError(readSafetensorsHeader(f), f, message)
  })

  it('refuses to load a non-float tensor, naming it', async () => {
    const f = rawFile('int', { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, Buffer.alloc(16))
    const h = await readSafetensorsHeader(f)
    expect(() => safetensorsRef(h, 'ids', 'x')).toThrow(/tensor ids has dtype I64; supported: F32, F16, BF16/)
    expect(() => safetensorsRef(h, 'nope', 'x')).toThrow(/missing tensor nope/)
  })

  it('reports a missing file as a ModelFormatError', async () => {
    const f = join(tmp.dir, 'does-not-exist.safetensors')
    await expectFormatError(readSafetensorsHeader(f), f, /cannot open/)
  })
})
