// Shared helpers for the format tests: tiny configs, seeded random models held in memory (so
// what was written can be compared with what is read), temp dirs, and the error matcher.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'vitest'
import { expectedShapes } from '../../../engine/formats/hf.ts'
import type { WritableModel } from '../../../engine/formats/safetensors-writer.ts'
import { createTensorReader } from '../../../engine/formats/tensor-reader.ts'
import type { ModelConfig, ModelSource, TensorRef } from '../../../engine/index.ts'
import { seededRandom } from '../../seed.ts'

export function tinyConfig (over: Partial<ModelConfig> = {}): ModelConfig {
  const c: ModelConfig = {
    architecture: 'llama', dim: 64, hiddenDim: 96, nLayers: 2, nHeads: 4, nKvHeads: 2, headSize: 16,
    vocabSize: 400, seqLen: 128, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkvBias: false, bosId: 1, eosId: 2, ...over
  }
  c.headSize = c.dim / c.nHeads
  return c
}

/** A model whose tensors are seeded random f32 arrays, kept so tests can compare reads with them. */
export function memoryModel (config: ModelConfig, seed: number): WritableModel & { values: Map<string, Float32Array> } {
  const rand = seededRandom(seed)
  const values = new Map<string, Float32Array>()
  const shapes = expectedShapes(config)
  for (const [name, shape] of shapes) {
    values.set(name, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (rand() * 2 - 1) * 0.5))
  }
  return {
    config,
    values,
    rows (name, start, count) {
      const shape = shapes.get(name) as number[]
      const cols = shape[shape.length - 1]
      return (values.get(name) as Float32Array).slice(start * cols, (start + count) * cols)
    }
  }
}

/** Every tensor of `source`, read through the engine's tensor reader as f32 (permutations undone). */
export function readAllTensors (source: ModelSource): Map<string, Float32Array> {
  const reader = createTensorReader()
  const read = (ref: TensorRef): Float32Array => reader.readAll(ref)
  try {
    return new Map([...source.tensors].map(([name, ref]) => [name, read(ref)]))
  } finally {
    reader.close()
  }
}

export function tempDir (prefix: string): { dir: string, cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `mycelium-${prefix}-`))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Expects a ModelFormatError whose message names `file` and matches `what`. */
export async function expectFormatError (p: Promise<unknown>, file: string, what: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err, `expected a ModelFormatError about ${String(what)}`).toMatchObject({ name: 'ModelFormatError' })
  expect((err as Error).message).toContain(file)
  expect((err as Error).message).toMatch(what)
}
