// The daemon's manifest is the full content hash, computed once per file version: a second start
// reads it from <data-dir>/manifests, a changed file is hashed again.
import { copyFileSync, mkdtempSync, rmSync, utimesSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { openModel } from '../../engine/index.ts'
import { manifestFromSource } from '../../sharding/index.ts'
import { cachedManifest } from '../../node/manifest-cache.ts'
import { STORIES260K } from '../models.ts'

const dirs: string[] = []
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

describe('cachedManifest', () => {
  it('hashes the weights once per file version and reuses the result', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mycelium-manifest-'))
    dirs.push(dir)
    const file = join(dir, 'model.bin')
    copyFileSync(STORIES260K, file)
    const source = await openModel(file)
    const first = await cachedManifest(source, join(dir, 'cache'))
    expect(first.cached).toBe(false)
    expect(first.manifest).toEqual(await manifestFromSource(source, { hash: 'weights' }))
    const second = await cachedManifest(await openModel(file), join(dir, 'cache'))
    expect(second).toEqual({ manifest: first.manifest, cached: true })
    utimesSync(file, new Date(), new Date(Date.now() + 5_000))
    const touched = await cachedManifest(await openModel(file), join(dir, 'cache'))
    expect(touched.cached).toBe(false)
    expect(touched.manifest.id).toBe(first.manifest.id)
  })

  it('stops hashing when aborted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mycelium-manifest-'))
    dirs.push(dir)
    const controller = new AbortController()
    controller.abort()
    await expect(cachedManifest(await openModel(STORIES260K), join(dir, 'cache'), { signal: controller.signal })).rejects.toThrow()
  })
})
