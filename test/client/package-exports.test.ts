// Another TypeScript project uses the SDK through the package's exports: a scratch project whose
// node_modules/mycelium links to this repository imports 'mycelium/client' and runs under Node's
// type stripping (no build step).
import { spawnSync } from 'node:child_process'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, expect, it } from 'vitest'
import { cleanupDaemons, scratch } from '../node/daemons.ts'

afterEach(cleanupDaemons)

it("a separate project imports { connect } from 'mycelium/client' and gets typed errors", () => {
  const project = scratch('mycelium-consumer-')
  mkdirSync(join(project, 'node_modules'))
  symlinkSync(fileURLToPath(new URL('../..', import.meta.url)), join(project, 'node_modules', 'mycelium'))
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', private: true }))
  writeFileSync(join(project, 'main.ts'), [
    "import { connect, ConnectFailedError } from 'mycelium/client'",
    "import type { MyceliumClient } from 'mycelium/client'",
    'let client: MyceliumClient | undefined',
    'try {',
    "  client = await connect({ bootstrap: ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzBqXs7pvxRsBKpCskPFGdRFzEC1ZLbX7yuW9nxFqJLS'], swarm: 'consumer' })",
    '} catch (err) {',
    "  console.log(JSON.stringify({ connect: typeof connect, name: (err as Error).name, typed: err instanceof ConnectFailedError }))",
    '}',
    'await client?.close()'
  ].join('\n'))
  const r = spawnSync(process.execPath, ['main.ts'], { cwd: project, encoding: 'utf8', timeout: 30_000 })
  expect(r.stderr).not.toMatch(/Error \[ERR_/)
  expect(JSON.parse(r.stdout.trim())).toEqual({ connect: 'function', name: 'ConnectFailedError', typed: true })
}, 40_000)
