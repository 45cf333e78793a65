// The installed launcher must work whatever Node the user's shell finds first: under Node >= 22.18
// it runs the CLI directly; under an older system Node it re-runs it with the pinned Node.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

const bin = new URL('../../node/bin.js', import.meta.url).pathname
const systemNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p))

describe('node/bin.js launcher', () => {
  it('prints the version under the Node running the tests', () => {
    const out = execFileSync(process.execPath, [bin, '--version'], { encoding: 'utf8' })
    expect(out.trim()).toBe('0.1.0')
  })

  it.skipIf(systemNode === undefined)('prints the version under the system Node', () => {
    const out = execFileSync(systemNode as string, [bin, '--version'], { encoding: 'utf8' })
    expect(out.trim()).toBe('0.1.0')
  })
})
