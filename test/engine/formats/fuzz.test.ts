// Damaged model files, seeded: stories260K as a llama2.c file, an f32 GGUF and a Hugging Face
// directory, each mutated many times (bytes flipped or overwritten with large integers in the
// header region, or the file cut short). Opening and loading must either work or fail with one of
// the engine's named errors — never another exception, a crash or an unbounded allocation.
// FUZZ_ITERATIONS raises the count (default 150 per format).
import { copyFileSync, cpSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openModel, openTokenizer } from '../../../engine/formats/open-model.ts'
import { loadShard } from '../../../engine/shard.ts'
import { convertModel } from '../../../scripts/convert-model.ts'
import { STORIES260K, TOK512 } from '../../models.ts'
import { seededRandom, testSeed } from '../../seed.ts'
import { tempDir } from './fixtures.ts'

const seed = testSeed()
const iterations = Number(process.env.FUZZ_ITERATIONS ?? 150)
const NAMED = ['ModelFormatError', 'ShardConfigError', 'ShapeError', 'SessionLimitError']
const { dir, cleanup } = tempDir('fuzz')
afterAll(cleanup)

/** Applies one seeded mutation to `file` in place. */
function mutate (file: string, rand: () => number, headerBytes: number): string {
  const bytes = readFileSync(file)
  const span = Math.min(bytes.length, headerBytes)
  const kind = Math.floor(rand() * 3)
  if (kind === 0) {
    const n = 1 + Math.floor(rand() * 8)
    for (let i = 0; i < n; i++) bytes[Math.floor(rand() * span)] ^= 1 << Math.floor(rand() * 8)
    writeFileSync(file, bytes)
    return `flip ${n} bytes`
  }
  if (kind === 1) {
    const at = Math.floor(rand() * Math.max(1, span - 8))
    const big = [0xffffffff, 0x7fffffff, 0x80000000, 2 ** 31 + 7, 1e9][Math.floor(rand() * 5)]
    bytes.writeUInt32LE(big >>> 0, at)
    if (rand() < 0.5) bytes.writeUInt32LE(Math.floor(rand() * 0x100), at + 4)
    writeFileSync(file, bytes)
    return `u32 ${big} at ${at}`
  }
  const to = Math.floor(rand() * statSync(file).size)
  truncateSync(file, to)
  return `truncate to ${to}`
}

async function openAndRun (path: string): Promise<void> {
  const source = await openModel(path, { tokenizer: TOK512 })
  const shard = await loadShard(source)
  try {
    const session = shard.openSession({ maxLength: 8 })
    session.step({ tokens: [1, 2, 3] })
    session.close()
  } finally {
    await shard.close()
  }
}

describe(`damaged model files (TEST_SEED=${seed}, ${iterations} per format)`, () => {
  const originals: Record<string, string> = {}
  beforeAll(async () => {
    originals.llama2c = STORIES260K
    originals.gguf = join(dir, 'orig.gguf')
    await convertModel({ model: STORIES260K, tokenizer: TOK512, to: 'gguf', out: originals.gguf })
    originals.hf = join(dir, 'orig-hf')
    await convertModel({ model: STORIES260K, tokenizer: TOK512, to: 'hf', out: originals.hf })
  })

  it.each([
    { format: 'llama2c', header: 64 },
    { format: 'gguf', header: 16384 },
    { format: 'hf', header: 4096 }
  ])('$format: every mutation loads or fails with a named engine error', async ({ format, header }) => {
    const rand = seededRandom(seed ^ format.length)
    const outcomes = { loaded: 0, refused: 0 }
    for (let i = 0; i < iterations; i++) {
      const target = join(dir, `${format}-${i}`)
      let path = target
      let file = target
      if (format === 'hf') {
        cpSync(originals.hf, target, { recursive: true })
        file = join(target, rand() < 0.8 ? 'model.safetensors' : 'config.json')
      } else {
        copyFileSync(originals[format], target)
        if (format === 'llama2c') path = target
      }
      const what = mutate(file, rand, header)
      const err = await openAndRun(path).then(() => undefined, (e: unknown) => e as Error)
      if (err === undefined) outcomes.loaded++
      else {
        outcomes.refused++
        expect(NAMED, `${format} #${i} (${what}): ${err.name}: ${err.message}`).toContain(err.name)
      }
    }
    console.log(`${format}: ${outcomes.loaded} mutated files loaded, ${outcomes.refused} refused with a named error`)
    expect(outcomes.refused).toBeGreaterThan(0)
  })
})

describe(`damaged tokenizer files (TEST_SEED=${seed}, ${iterations} each)`, () => {
  it.each([
    { name: 'tokenizer.bin', make: async () => TOK512, header: 6227 },
    {
      name: 'tokenizer.json',
      make: async () => {
        await convertModel({ model: STORIES260K, tokenizer: TOK512, to: 'hf', out: join(dir, 'tok-hf') })
        return join(dir, 'tok-hf', 'tokenizer.json')
      },
      header: 1 << 20
    }
  ])('$name: loads and encodes, or fails with a ModelFormatError', async ({ name, make, header }) => {
    const original = await make()
    const rand = seededRandom(seed ^ name.length)
    let refused = 0
    for (let i = 0; i < iterations; i++) {
      const file = join(dir, `${i}-${name}`)
      copyFileSync(original, file)
      const what = mutate(file, rand, header)
      const source = await openModel(STORIES260K, { tokenizer: TOK512 })
      const err = await (async () => {
        const tok = name === 'tokenizer.bin'
          ? await openTokenizer(source, file)
          : await openTokenizer({ ...source, tokenizer: { kind: 'hf', path: file } })
        tok.decode(tok.encode('Once upon a time, naïve 🦙'))
      })().then(() => undefined, (e: unknown) => e as Error)
      if (err !== undefined) {
        refused++
        expect(err.name, `${name} #${i} (${what}): ${err.message}`).toBe('ModelFormatError')
      }
    }
    expect(refused).toBeGreaterThan(0)
  })
})
