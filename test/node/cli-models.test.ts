// --model resolution and the model cache: local paths, cached names, Hugging Face repo ids
// downloaded with @huggingface/hub (here from a hub-shaped HTTP server on loopback serving the
// real stories260K files), `npm run seed-models`, and the one-line error when the hub cannot be
// reached (an unreachable loopback port), which says how to use a local file instead.
import { spawnSync } from 'node:child_process'
import { readFileSync, existsSync, readdirSync } from 'node:fs'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveModel } from '../../node/model-cache.ts'
import type { DownloadProgress } from '../../node/model-cache.ts'
import { MODELS, STORIES260K, TOK512 } from '../models.ts'
import { cleanupDaemons, scratch } from './daemons.ts'

const root = new URL('../../', import.meta.url).pathname
const cli = join(root, 'node/cli.ts')
const servers: Server[] = []
afterEach(async () => {
  cleanupDaemons()
  await Promise.all(servers.splice(0).map(async (s) => await new Promise((resolve) => { s.close(resolve) })))
})

function run (args: string[], env: NodeJS.ProcessEnv): { status: number | null, stderr: string, stdout: string } {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } })
  return { status: r.status, stderr: r.stderr, stdout: r.stdout }
}

/** A loopback port nothing listens on. */
async function closedPort (): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => { s.listen(0, '127.0.0.1', resolve) })
  const { port } = s.address() as AddressInfo
  await new Promise((resolve) => { s.close(resolve) })
  return port
}

/** The two endpoints @huggingface/hub uses to list and download: tree API and resolve with Range. */
async function fakeHub (repo: string, files: Record<string, Buffer>): Promise<{ url: string, requests: string[] }> {
  const requests: string[] = []
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    requests.push(`${req.method} ${url.pathname}`)
    if (url.pathname === `/api/models/${repo}/tree/main`) {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify(Object.entries(files).map(([path, b]) => ({ type: 'file', path, size: b.length, oid: String(b.length) }))))
      return
    }
    const prefix = `/${repo}/resolve/main/`
    const body = url.pathname.startsWith(prefix) ? files[decodeURIComponent(url.pathname.slice(prefix.length))] : undefined
    if (body === undefined) {
      res.statusCode = 404
      res.setHeader('X-Error-Code', url.pathname.startsWith(prefix) ? 'EntryNotFound' : 'RepoNotFound')
      res.end('{"error":"not found"}')
      return
    }
    res.setHeader('ETag', `"${body.length}"`)
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
    if (range === null) { res.end(body); return }
    const [start, end] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)]
    res.statusCode = 206
    res.setHeader('content-range', `bytes ${start}-${end}/${body.length}`)
    res.end(body.subarray(start, end + 1))
  })
  servers.push(server)
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests }
}

const stories = { 'stories260K/stories260K.bin': readFileSync(STORIES260K), 'stories260K/tok512.bin': readFileSync(TOK512), 'stories15M.bin': Buffer.from('not used') }

describe('--model: paths, the cache and the Hugging Face hub', () => {
  it('a local path is used as it is', async () => {
    expect(await resolveModel(STORIES260K, { home: scratch('mycelium-home-') })).toEqual({ path: STORIES260K, from: 'path' })
  })

  it('npm run seed-models copies stories260K into $MYCELIUM_HOME/models, where the default name finds it', async () => {
    const home = scratch('mycelium-home-')
    const first = run([join(root, 'scripts/seed-models.ts')], { MYCELIUM_HOME: home, MYCELIUM_MODELS: MODELS })
    expect(first.status).toBe(0)
    const dir = join(home, 'models', 'stories260K')
    expect(readFileSync(join(dir, 'stories260K.bin')).equals(readFileSync(STORIES260K))).toBe(true)
    expect(readFileSync(join(dir, 'tok512.bin')).equals(readFileSync(TOK512))).toBe(true)
    expect(first.stdout).toMatch(/→ .*stories260K\.bin/)
    const again = run([join(root, 'scripts/seed-models.ts')], { MYCELIUM_HOME: home, MYCELIUM_MODELS: MODELS })
    expect(again.status).toBe(0)
    expect(again.stdout).not.toMatch(/→/) // already there: nothing copied
    expect(await resolveModel('stories260K', { home, hubUrl: `http://127.0.0.1:${await closedPort()}` })).toEqual({ path: join(dir, 'stories260K.bin'), from: 'cache' })
    const none = run([join(root, 'scripts/seed-models.ts')], { MYCELIUM_HOME: home, MYCELIUM_MODELS: join(home, 'nothing') })
    expect(none.status).toBe(0)
    expect(none.stdout).toMatch(/no shared models at/)
  })

  it('downloads org/name:file (and the llama2.c tokenizer beside it) into the cache once, with progress', async () => {
    const home = scratch('mycelium-home-')
    const hub = await fakeHub('karpathy/tinyllamas', stories)
    const progress: DownloadProgress[] = []
    const got = await resolveModel('karpathy/tinyllamas:stories260K/stories260K.bin', { home, hubUrl: hub.url, onProgress: (p) => progress.push(p) })
    const dir = join(home, 'models', 'hf', 'karpathy', 'tinyllamas', 'stories260K')
    expect(got).toEqual({ path: join(dir, 'stories260K.bin'), from: 'hub' })
    expect(readFileSync(got.path).equals(stories['stories260K/stories260K.bin'])).toBe(true)
    expect(readFileSync(join(dir, 'tok512.bin')).equals(stories['stories260K/tok512.bin'])).toBe(true)
    expect(readdirSync(dir).sort()).toEqual(['stories260K.bin', 'tok512.bin']) // no .partial left
    const done = progress.filter((p) => p.done)
    expect(done.map((p) => [p.file, p.bytes, p.total])).toEqual([['stories260K/stories260K.bin', 1056540, 1056540], ['stories260K/tok512.bin', 6227, 6227]])
    const asked = hub.requests.length
    expect(await resolveModel('karpathy/tinyllamas:stories260K/stories260K.bin', { home, hubUrl: hub.url })).toEqual({ path: got.path, from: 'cache' })
    expect(hub.requests.length).toBe(asked) // the cache answered
  })

  it('the default model name downloads from karpathy/tinyllamas when the cache lacks it', async () => {
    const home = scratch('mycelium-home-')
    const hub = await fakeHub('karpathy/tinyllamas', stories)
    const got = await resolveModel('stories260K', { home, hubUrl: hub.url })
    expect(got).toEqual({ path: join(home, 'models', 'stories260K', 'stories260K.bin'), from: 'hub' })
    expect(existsSync(join(home, 'models', 'stories260K', 'tok512.bin'))).toBe(true)
  })

  it('a repo with several model files and no file named: an error listing them', async () => {
    const hub = await fakeHub('karpathy/tinyllamas', stories)
    await expect(resolveModel('karpathy/tinyllamas', { home: scratch('mycelium-home-'), hubUrl: hub.url })).rejects.toThrow(/name the file to serve, e.g. --model karpathy\/tinyllamas:stories260K\/stories260K.bin/)
    await expect(resolveModel('karpathy/tinyllamas:nope.bin', { home: scratch('mycelium-home-'), hubUrl: hub.url })).rejects.toThrow(/has no file nope.bin/)
    await expect(resolveModel('someone/else:x.bin', { home: scratch('mycelium-home-'), hubUrl: hub.url })).rejects.toThrow(/someone\/else is not on the Hugging Face hub .*HTTP 404/)
  })

  it('unreachable hub: one line that says how to use a local file instead (node start and testnet)', async () => {
    const home = scratch('mycelium-home-')
    const env = { MYCELIUM_HOME: home, HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` }
    const start = run([cli, 'node', 'start', '--data-dir', join(home, 'd'), '--model', 'karpathy/tinyllamas:stories15M.bin'], env)
    expect(start.status).toBe(1)
    expect(start.stderr).toMatch(/^mycelium: cannot reach the Hugging Face hub at http:\/\/127\.0\.0\.1:\d+ to download karpathy\/tinyllamas \(ECONNREFUSED\); to use a local model instead, pass its path \(--model \.\/model\.bin/)
    expect(start.stderr.trim().split('\n')).toHaveLength(1)
    const testnet = run([cli, 'testnet'], env)
    expect(testnet.status).toBe(1)
    expect(testnet.stderr).toMatch(/cannot reach the Hugging Face hub .* or put its files in .*models\/stories260K .*npm run seed-models/)
    expect(testnet.stderr.trim().split('\n')).toHaveLength(1)
    const unknown = run([cli, 'node', 'start', '--data-dir', join(home, 'd'), '--model', 'no-such-model'], env)
    expect(unknown.stderr).toMatch(/^mycelium: --model: no-such-model is neither a file nor a model in .* nor a Hugging Face repo id/)
  })
})
