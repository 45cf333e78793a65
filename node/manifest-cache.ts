// The model's manifest with its full content hash, computed once per file version. Hashing every
// tensor of a multi-GB model takes tens of seconds (sha-256 runs at ≈0.5–1 GB/s on one core), and
// the cheap index-only hash cannot tell two fine-tunes of one base apart (same shapes), which
// would put different weights in one pipeline. So the daemon uses the full hash and caches it in
// `<data-dir>/manifests/`, keyed by every model file's path, size, inode and mtime: a restart
// with an unchanged file reads the cache; a changed or replaced file is hashed again.
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ModelSource } from '../engine/index.ts'
import { manifestFromSource } from '../sharding/index.ts'
import type { ModelManifest } from '../sharding/index.ts'

async function cacheKey (source: ModelSource): Promise<string> {
  const files = [...new Set([...source.tensors.values()].map((t) => t.file))].sort()
  const h = createHash('sha256').update('mycelium-manifest-cache/1\n').update(JSON.stringify(source.config)).update('\n')
  for (const file of files) {
    const s = await stat(file, { bigint: true })
    h.update(`${file}\t${s.size}\t${s.ino}\t${s.mtimeNs}\n`)
  }
  return h.digest('hex')
}

function plausible (m: unknown, source: ModelSource): m is ModelManifest {
  const x = m as Partial<ModelManifest> | null
  return typeof x?.id === 'string' && /^[0-9a-f]{64}$/.test(x.id) && x.nLayers === source.config.nLayers && x.dim === source.config.dim && typeof x.layerBytes === 'object'
}

/** The manifest of `source` (full content hash), from the cache when the files are unchanged. */
export async function cachedManifest (source: ModelSource, cacheDir: string, options: { signal?: AbortSignal } = {}): Promise<{ manifest: ModelManifest, cached: boolean }> {
  const file = join(cacheDir, `${await cacheKey(source)}.json`)
  try {
    const m = JSON.parse(await readFile(file, 'utf8')) as unknown
    if (plausible(m, source)) return { manifest: m, cached: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !(err instanceof SyntaxError)) throw err
  }
  const manifest = await manifestFromSource(source, { hash: 'weights', ...(options.signal !== undefined ? { signal: options.signal } : {}) })
  await mkdir(cacheDir, { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(manifest), { mode: 0o600 })
  await rename(tmp, file)
  return { manifest, cached: false }
}
