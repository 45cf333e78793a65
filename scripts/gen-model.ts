// Generates a shape-only model with seeded random weights, in any format the engine reads.
//   node scripts/gen-model.ts --shape NAME --format llama2c|hf|gguf --dtype f32|f16|bf16|q8_0|q4_0
//                             --out PATH [--seed N] [--layers N]
// Weights are uniform with standard deviation 0.02 (so activations stay finite), norms are 1.
// Every value is a hash of (seed, tensor, index), so any row range is generated independently
// and the output is identical however a writer chunks it. A synthetic SentencePiece vocabulary
// of the shape's size goes with it: tokenizer.ggml.* in a GGUF, tokenizer.json in an HF
// directory, tok{vocab}.bin beside a llama2.c checkpoint.
import { mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, Option } from 'commander'
import type { ModelConfig, SourceDType } from '../engine/index.ts'
import { writeGgufModel } from '../engine/formats/gguf-writer.ts'
import { expectedShapes } from '../engine/formats/hf.ts'
import { writeLlama2c, writeLlama2cTokenizer } from '../engine/formats/llama2c-writer.ts'
import { writeHfModel } from '../engine/formats/safetensors-writer.ts'
import type { WritableModel } from '../engine/formats/safetensors-writer.ts'
import { TokenType } from '../engine/tokenizer-gguf.ts'
import type { SpmVocab } from '../engine/tokenizer-gguf.ts'
import { tokenizerConfigFromSpm, tokenizerJsonFromSpm } from '../engine/tokenizer-hf.ts'
import { MODEL_SHAPES, shapeConfig } from './model-shapes.ts'

const WEIGHT_STD = 0.02
const HALF_WIDTH = WEIGHT_STD * Math.sqrt(3) // uniform on [-a, a] has std a / √3
const FILLER_ALPHABET = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'"
const BYTE_PIECES = 256
const FIRST_BYTE_ID = 3

export type ModelFormat = 'llama2c' | 'hf' | 'gguf'

/** A model whose every value is a seeded hash of (seed, tensor name, element index). */
export function randomModel (config: ModelConfig, seed: number): WritableModel {
  const shapes = expectedShapes(config)
  return {
    config,
    rows (name, start, count) {
      const shape = shapes.get(name)
      if (shape === undefined) throw new Error(`${name} is not a tensor of this model`)
      const cols = shape[shape.length - 1]
      const out = new Float32Array(count * cols)
      if (name.endsWith('norm')) return out.fill(1)
      const base = hashString(name) ^ Math.imul(seed | 0, 0x9e3779b1)
      const first = start * cols
      for (let i = 0; i < out.length; i++) out[i] = (unitHash(base, first + i) * 2 - 1) * HALF_WIDTH
      return out
    }
  }
}

/** A uniform [0, 1) value from (key, index): a murmur3-style finalizer over the pair. */
function unitHash (key: number, index: number): number {
  let h = (key ^ Math.imul(index, 0x85ebca6b)) >>> 0
  h ^= Math.floor(index / 4294967296)
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d)
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b)
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296
}

function hashString (s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/**
 * A synthetic SentencePiece vocabulary of `size` pieces: <unk>, <s>, </s>, the 256 byte pieces
 * <0x00>..<0xFF>, then filler pieces over a small alphabet — longer pieces first with higher
 * scores, single characters last, as SentencePiece orders them.
 */
export function syntheticVocab (size: number): SpmVocab {
  const head = ['<unk>', '<s>', '</s>']
  for (let b = 0; b < BYTE_PIECES; b++) head.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)
  const need = size - head.length
  if (need < FILLER_ALPHABET.length) throw new Error(`vocabulary size ${size} is too small for a synthetic vocabulary (need ≥ ${head.length + FILLER_ALPHABET.length})`)
  const singles = [...FILLER_ALPHABET]
  const longer: string[] = []
  for (let len = 2; singles.length + longer.length < need; len++) {
    for (const piece of piecesOfLength(len)) {
      if (singles.length + longer.length >= need) break
      longer.push(piece)
    }
  }
  const pieces = [...head, ...longer, ...singles]
  const scores = new Float32Array(size)
  const types = new Int32Array(size).fill(TokenType.NORMAL)
  types[0] = TokenType.UNKNOWN
  types[1] = types[2] = TokenType.CONTROL
  for (let i = FIRST_BYTE_ID; i < FIRST_BYTE_ID + BYTE_PIECES; i++) types[i] = TokenType.BYTE
  for (let i = head.length; i < size; i++) scores[i] = -(i - head.length)
  return { pieces, scores, types, bosId: 1, eosId: 2, unkId: 0 }
}

function * piecesOfLength (len: number): Generator<string> {
  const a = FILLER_ALPHABET
  const idx = new Array<number>(len).fill(0)
  for (;;) {
    yield idx.map((i) => a[i]).join('')
    let k = len - 1
    while (k >= 0 && ++idx[k] === a.length) idx[k--] = 0
    if (k < 0) return
  }
}

export interface GenModelOptions {
  shape: string
  format: ModelFormat
  dtype: SourceDType
  out: string
  seed?: number
  layers?: number
}

/** Writes the generated model; returns the path to open it with (a file, or the HF directory). */
export async function genModel (o: GenModelOptions): Promise<string> {
  const config = shapeConfig(o.shape, o.layers !== undefined ? { layers: o.layers } : {})
  const model = randomModel(config, o.seed ?? 1)
  const vocab = syntheticVocab(config.vocabSize)
  switch (o.format) {
    case 'gguf':
      await mkdir(dirname(o.out), { recursive: true })
      await writeGgufModel(o.out, model, vocab, { dtype: o.dtype, name: `${o.shape} (random)` })
      return o.out
    case 'hf':
      if (o.dtype !== 'f32' && o.dtype !== 'f16' && o.dtype !== 'bf16') throw new Error(`--format hf stores f32, f16 or bf16, not ${o.dtype}`)
      await writeHfModel(o.out, model, { dtype: o.dtype, tokenizerJson: tokenizerJsonFromSpm(vocab), tokenizerConfig: tokenizerConfigFromSpm(vocab) })
      return o.out
    case 'llama2c':
      if (o.dtype !== 'f32') throw new Error('--format llama2c stores f32 only')
      await mkdir(dirname(o.out), { recursive: true })
      await writeLlama2c(o.out, model)
      await writeLlama2cTokenizer(join(dirname(o.out), `tok${config.vocabSize}.bin`), vocab)
      return o.out
  }
}

async function main (): Promise<void> {
  const program = new Command()
    .description('Generate a shape-only model with seeded random weights')
    .addOption(new Option('--shape <name>', 'model shape').choices(Object.keys(MODEL_SHAPES)).makeOptionMandatory())
    .addOption(new Option('--format <format>', 'output format').choices(['llama2c', 'hf', 'gguf']).makeOptionMandatory())
    .addOption(new Option('--dtype <dtype>', 'stored dtype').choices(['f32', 'f16', 'bf16', 'q8_0', 'q4_0']).default('f32'))
    .requiredOption('--out <path>', 'output file (gguf, llama2c) or directory (hf)')
    .option('--seed <n>', 'PRNG seed', (v) => Number.parseInt(v, 10), 1)
    .option('--layers <n>', 'override the number of layers', (v) => Number.parseInt(v, 10))
    .parse()
  const o = program.opts<GenModelOptions>()
  const t0 = performance.now()
  const path = await genModel(o)
  console.log(`wrote ${o.shape} (${o.format}, ${o.dtype}) to ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error((err as Error).message)
    process.exit(1)
  })
}
