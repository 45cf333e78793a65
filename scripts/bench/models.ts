// The benchmark's model files: shape-only GGUFs written by scripts/gen-model.ts into a cache
// directory (bench/models/, gitignored), one per (shape, dtype), reused when present. Our engine
// and llama.cpp load the same file; for f32 our engine loads an f32 GGUF.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { WeightDType } from '../../engine/index.ts'

export interface ModelFile {
  shape: string
  dtype: WeightDType
  path: string
  fileBytes: number
  generatedNow: boolean
  generateMs?: number
}

const GEN_MODEL = new URL('../gen-model.ts', import.meta.url).pathname

export function modelPath (dir: string, shape: string, dtype: WeightDType): string {
  return join(dir, `${shape}-${dtype}.gguf`)
}

/** The cached GGUF for (shape, dtype), generated first when missing. Throws when generation fails. */
export function ensureModel (dir: string, shape: string, dtype: WeightDType, log: (line: string) => void): ModelFile {
  const path = modelPath(dir, shape, dtype)
  if (existsSync(path)) return { shape, dtype, path, fileBytes: statSync(path).size, generatedNow: false }
  mkdirSync(dir, { recursive: true })
  // Write under a temporary name and rename, so an interrupted run never leaves a partial model
  // that a later run would take for a cached one.
  const partial = `${path}.partial`
  rmSync(partial, { force: true })
  log(`generating ${shape} ${dtype} GGUF → ${path} ...`)
  const started = performance.now()
  const r = spawnSync(process.execPath, [GEN_MODEL, '--shape', shape, '--format', 'gguf', '--dtype', dtype, '--out', partial], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8'
  })
  if (r.status !== 0) {
    rmSync(partial, { force: true })
    throw new Error(`scripts/gen-model.ts failed for ${shape} ${dtype}: ${r.error?.message ?? r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
  }
  renameSync(partial, path)
  return { shape, dtype, path, fileBytes: statSync(path).size, generatedNow: true, generateMs: performance.now() - started }
}
