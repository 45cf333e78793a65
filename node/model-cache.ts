// `--model` resolution: a local path (any format the engine opens), a model already in the cache
// (`$MYCELIUM_HOME/models/<name>/`), or a Hugging Face repository id (`org/name` or
// `org/name:path/in/repo`) downloaded with @huggingface/hub into `$MYCELIUM_HOME/models/hf/org/name/`.
// Files are written to `<file>.partial` and renamed when complete, so an interrupted download is
// never taken for a model. The hub is only contacted when the cache lacks the files.
import { createWriteStream, existsSync, readdirSync, statSync } from 'node:fs'
import { mkdir, rename, rm } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { ConfigError, ModelDownloadError } from './errors.ts'

/** The model `mycelium testnet` serves unless --model says otherwise. */
export const DEFAULT_MODEL = 'stories260K'

/** Named models and where on the hub they come from when the cache lacks them. */
export const KNOWN_MODELS: Readonly<Record<string, { repo: string, files: string[] }>> = {
  stories260K: { repo: 'karpathy/tinyllamas', files: ['stories260K/stories260K.bin', 'stories260K/tok512.bin'] }
}

/** Where Mycelium keeps models and the testnet's logs: MYCELIUM_HOME, default ~/.mycelium. */
export function myceliumHome (env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.MYCELIUM_HOME !== undefined && env.MYCELIUM_HOME !== '' ? env.MYCELIUM_HOME : join(homedir(), '.mycelium'))
}

/** The hub endpoint: MYCELIUM_HF_ENDPOINT, else HF_ENDPOINT (as huggingface_hub reads it), else huggingface.co. */
export function hubEndpoint (env: NodeJS.ProcessEnv = process.env): string {
  return env.MYCELIUM_HF_ENDPOINT ?? env.HF_ENDPOINT ?? 'https://huggingface.co'
}

export interface DownloadProgress { file: string, bytes: number, total: number, done: boolean }

export interface ResolveModelOptions {
  /** MYCELIUM_HOME (default: myceliumHome()). */
  home?: string
  hubUrl?: string
  accessToken?: string
  onProgress?: (p: DownloadProgress) => void
  signal?: AbortSignal
}

export interface ResolvedModel {
  /** What the engine opens: a file, or a Hugging Face directory. */
  path: string
  from: 'path' | 'cache' | 'hub'
}

const REPO_ID = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?::(.+))?$/

/** The model inside a cache folder: `<name>.bin`, a single .gguf or .bin, or the folder itself (config.json). */
function modelIn (dir: string, name?: string): string | undefined {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return undefined
  const files = readdirSync(dir).filter((f) => !f.endsWith('.partial'))
  if (name !== undefined && files.includes(`${name}.bin`)) return join(dir, `${name}.bin`)
  if (files.includes('config.json') && files.some((f) => f.endsWith('.safetensors'))) return dir
  const ggufs = files.filter((f) => f.endsWith('.gguf'))
  if (ggufs.length === 1) return join(dir, ggufs[0])
  const bins = files.filter((f) => f.endsWith('.bin') && !/^tok(enizer|\d+)/.test(f))
  return bins.length === 1 ? join(dir, bins[0]) : undefined
}

/** What `--model SPEC` means; downloads from the hub when needed (ModelDownloadError when it cannot). */
export async function resolveModel (spec: string, options: ResolveModelOptions = {}): Promise<ResolvedModel> {
  const home = options.home ?? myceliumHome()
  const local = resolve(spec)
  if (existsSync(local)) return { path: local, from: 'path' }
  const models = join(home, 'models')
  const known = KNOWN_MODELS[spec]
  if (!spec.includes('/') || known !== undefined) {
    const cached = modelIn(join(models, spec), spec)
    if (cached !== undefined) return { path: cached, from: 'cache' }
    if (known === undefined) throw new ConfigError(`--model: ${spec} is neither a file nor a model in ${models} nor a Hugging Face repo id (org/name[:file])`)
    const dir = join(models, spec)
    try {
      await download(known.repo, known.files.map((f) => ({ remote: f, local: join(dir, f.split('/').pop() as string) })), options, `the default model ${spec}`, dir)
    } catch (err) {
      if (!(err instanceof ModelDownloadError)) throw err
      throw new ModelDownloadError(`${err.message} (in a checkout beside shared/, \`npm run seed-models\` copies ${spec} there)`, { cause: err })
    }
    return { path: modelIn(dir, spec) as string, from: 'hub' }
  }
  const m = REPO_ID.exec(spec)
  if (m === null) throw new ConfigError(`--model: no such file or directory: ${local} (nor a Hugging Face repo id: org/name[:file])`)
  const [, org, name, file] = m
  const dir = join(models, 'hf', org, name)
  const wanted = file === undefined ? undefined : join(dir, file)
  if (wanted !== undefined && existsSync(wanted)) return { path: wanted, from: 'cache' }
  if (file === undefined) {
    const cached = modelIn(dir)
    if (cached !== undefined) return { path: cached, from: 'cache' }
  }
  const files = await chooseFiles(`${org}/${name}`, file, options)
  await download(`${org}/${name}`, files.map((f) => ({ remote: f, local: join(dir, f) })), options, `${org}/${name}`, dir)
  const path = wanted ?? modelIn(dir)
  if (path === undefined) throw new ModelDownloadError(`${spec}: downloaded ${files.join(', ')} into ${dir} but found no model file there`)
  return { path, from: 'hub' }
}

/** The repo's files a model needs: the named file (and a llama2.c tokenizer beside it), else the one model the repo holds. */
async function chooseFiles (repo: string, file: string | undefined, options: ResolveModelOptions): Promise<string[]> {
  const { listFiles } = await import('@huggingface/hub')
  const all: string[] = []
  await hub(repo, options, async () => {
    for await (const entry of listFiles({ repo, recursive: true, hubUrl: options.hubUrl ?? hubEndpoint(), ...(options.accessToken !== undefined ? { accessToken: options.accessToken } : {}) })) {
      if (entry.type === 'file') all.push(entry.path)
    }
  })
  if (file !== undefined) {
    if (!all.includes(file)) throw new ModelDownloadError(`${repo} has no file ${file} (it has: ${all.slice(0, 20).join(', ')}${all.length > 20 ? ', …' : ''})`)
    const folder = file.includes('/') ? file.slice(0, file.lastIndexOf('/') + 1) : ''
    const tokenizers = file.endsWith('.bin') ? all.filter((f) => f.startsWith(folder) && !f.slice(folder.length).includes('/') && /^tok(enizer|\d+)\.bin$/.test(f.slice(folder.length))) : []
    return [file, ...tokenizers]
  }
  const root = all.filter((f) => !f.includes('/'))
  if (root.includes('config.json') && root.some((f) => f.endsWith('.safetensors'))) {
    return root.filter((f) => f.endsWith('.safetensors') || ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors.index.json'].includes(f))
  }
  const ggufs = all.filter((f) => f.endsWith('.gguf'))
  if (ggufs.length === 1) return ggufs
  const candidates = ggufs.length > 0 ? ggufs : all.filter((f) => f.endsWith('.bin'))
  throw new ModelDownloadError(`${repo}: name the file to serve, e.g. --model ${repo}:${candidates[0] ?? 'FILE'} (model files there: ${candidates.slice(0, 12).join(', ') || 'none the engine opens'})`)
}

async function download (repo: string, files: Array<{ remote: string, local: string }>, options: ResolveModelOptions, what: string, dir: string): Promise<void> {
  const { downloadFile } = await import('@huggingface/hub')
  for (const { remote, local } of files) {
    if (existsSync(local)) continue
    await hub(repo, options, async () => {
      const blob = await downloadFile({ repo, path: remote, hubUrl: options.hubUrl ?? hubEndpoint(), ...(options.accessToken !== undefined ? { accessToken: options.accessToken } : {}) })
      if (blob === null) throw new ModelDownloadError(`${repo} has no file ${remote} (needed for ${what})`)
      await mkdir(dirname(local), { recursive: true })
      const partial = `${local}.partial`
      let bytes = 0
      const report = options.onProgress
      report?.({ file: remote, bytes, total: blob.size, done: false })
      const count = new Transform({
        transform (chunk: Buffer, _enc, callback) {
          bytes += chunk.length
          report?.({ file: remote, bytes, total: blob.size, done: false })
          callback(null, chunk)
        }
      })
      try {
        await pipeline(Readable.fromWeb(blob.stream() as WebReadableStream<Uint8Array>), count, createWriteStream(partial), ...(options.signal !== undefined ? [{ signal: options.signal }] as const : []))
      } catch (err) {
        await rm(partial, { force: true })
        throw err
      }
      await rename(partial, local)
      report?.({ file: remote, bytes, total: blob.size, done: true })
    }, dir)
  }
}

/** Runs a hub call; network failures become one ModelDownloadError that says how to go local. */
async function hub (repo: string, options: ResolveModelOptions, fn: () => Promise<void>, dir?: string): Promise<void> {
  try {
    await fn()
  } catch (err) {
    if ((err as Error).name === 'ModelDownloadError') throw err
    const e = err as Error & { cause?: { code?: string, message?: string }, statusCode?: number }
    const endpoint = options.hubUrl ?? hubEndpoint()
    const local = `to use a local model instead, pass its path (--model ./model.bin, a .gguf or a Hugging Face directory)${dir !== undefined ? ` or put its files in ${dir}` : ''}`
    if (e.statusCode === 404 || e.statusCode === 401) {
      throw new ModelDownloadError(`${repo} is not on the Hugging Face hub at ${endpoint} (HTTP ${e.statusCode}: no such or a gated repository); ${local}`, { cause: err })
    }
    const why = e.cause?.code ?? e.cause?.message ?? e.message
    throw new ModelDownloadError(`cannot reach the Hugging Face hub at ${endpoint} to download ${repo} (${why}); ${local}`, { cause: err })
  }
}
