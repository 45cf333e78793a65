// `npm run seed-models`: copies the models this checkout's tests and testnet use from
// ../shared/models (MYCELIUM_MODELS overrides) into the model cache, $MYCELIUM_HOME/models
// (default ~/.mycelium/models), where `mycelium testnet` looks for its default model first.
// Files already there with the same size are left alone. Without a shared folder it says so and
// exits 0: the testnet then downloads the default model from the Hugging Face hub instead.
import { copyFileSync, existsSync, mkdirSync, renameSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { myceliumHome } from '../node/model-cache.ts'

/** Folder under the shared models → the files the cache needs from it (see test/models.ts). */
const SEED: Record<string, string[]> = { stories260K: ['stories260K.bin', 'tok512.bin'] }

const source = process.env.MYCELIUM_MODELS ?? fileURLToPath(new URL('../../shared/models', import.meta.url))
const target = join(myceliumHome(), 'models')

if (!existsSync(source)) {
  process.stdout.write(`seed-models: no shared models at ${source}; nothing copied (the testnet will download its default model)\n`)
  process.exit(0)
}
for (const [name, files] of Object.entries(SEED)) {
  const dir = join(target, name)
  mkdirSync(dir, { recursive: true })
  for (const file of files) {
    const from = join(source, name, file)
    const to = join(dir, file)
    if (!existsSync(from)) {
      process.stderr.write(`seed-models: ${from} is missing\n`)
      process.exit(1)
    }
    if (existsSync(to) && statSync(to).size === statSync(from).size) continue
    copyFileSync(from, `${to}.partial`) // renamed when complete, as downloads are
    renameSync(`${to}.partial`, to)
    process.stdout.write(`seed-models: ${from} → ${to}\n`)
  }
}
process.stdout.write(`seed-models: ${Object.keys(SEED).join(', ')} in ${target}\n`)
