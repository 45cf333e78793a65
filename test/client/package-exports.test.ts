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
  const repo = fileURLToPath(new URL('../..', import.meta.url))
  symlinkSync(repo, join(project, 'node_modules', 'mycelium'))
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
  // and it type-checks there: strict NodeNext resolution through the exports map, typed events
  writeFileSync(join(project, 'typed.ts'), [
    "import { connect, NoRouteError } from 'mycelium/client'",
    "import type { GenerateEvent } from 'mycelium/client'",
    "const client = await connect({ bootstrap: ['/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGzBqXs7pvxRsBKpCskPFGdRFzEC1ZLbX7yuW9nxFqJLS'], tokenizer: 'tok512.bin' })",
    'try {',
    "  for await (const ev of client.generate({ prompt: 'Once upon a time', maxTokens: 8 })) {",
    '    const e: GenerateEvent = ev',
    "    if (e.type === 'token') process.stdout.write(e.text)",
    '    else console.log(e.finishReason, e.usage.completionTokens)',
    '  }',
    '} catch (err) { if (err instanceof NoRouteError) console.log(err.message) }',
    'await client.close()',
    '// @ts-expect-error: maxTokens is a number',
    "client.generate({ prompt: 'x', maxTokens: 'many' })"
  ].join('\n'))
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2023', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, allowImportingTsExtensions: true, skipLibCheck: true, types: ['node'], typeRoots: [join(repo, 'node_modules/@types')] },
    files: ['typed.ts']
  }))
  const tsc = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', project], { cwd: project, encoding: 'utf8', timeout: 90_000 })
  expect(tsc.stdout + tsc.stderr).toBe('')
  expect(tsc.status).toBe(0)
}, 120_000)
