#!/usr/bin/env node
// The `mycelium` command. Mycelium is TypeScript run directly by Node >= 22.18 (type stripping).
// When this launcher is started by an older system Node, it re-runs the CLI under the Node that
// `npm ci` pinned in node_modules (the `node` devDependency), so the command works either way.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const cli = join(here, 'cli.ts')
const major = Number(process.versions.node.split('.')[0])
const minor = Number(process.versions.node.split('.')[1])

if (major > 22 || (major === 22 && minor >= 18)) {
  await import(cli)
} else {
  const pinned = join(here, '..', 'node_modules', '.bin', 'node')
  if (!existsSync(pinned)) {
    process.stderr.write(`mycelium needs Node.js >= 22.18 (found ${process.versions.node}); run \`npm ci\` to install the pinned Node.\n`)
    process.exit(1)
  }
  const r = spawnSync(pinned, [cli, ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}
