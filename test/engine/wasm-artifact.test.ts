// The committed engine/wasm/kernels.wasm must be what scripts/build-wasm.sh makes of kernels.c.
// Everywhere: the sources and the artifact match the sha256 sums build-wasm.sh recorded, so an
// edit without a rebuild fails. With clang-14 and wasm-ld-14 on PATH: a rebuild gives the same bytes.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SOURCES = ['engine/wasm/kernels.c', 'scripts/build-wasm.sh']
const ARTIFACT = 'engine/wasm/kernels.wasm'
const RECORD = 'engine/wasm/kernels.source.sha256'
const REBUILD = 'run `npm run build:wasm` and commit engine/wasm/'

const read = (path: string) => readFileSync(join(ROOT, path))
const sha256 = (...parts: Buffer[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest('hex')

/** `source <hex>` and `wasm <hex>` lines of kernels.source.sha256. */
function recorded (text: string): Record<string, string> {
  return Object.fromEntries(text.trim().split('\n').map((line) => line.trim().split(/\s+/)))
}

const hasTool = (tool: string) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0

describe('engine/wasm/kernels.wasm', () => {
  const record = recorded(read(RECORD).toString('utf8'))

  it('was built from the current kernels.c and build-wasm.sh', () => {
    expect(sha256(...SOURCES.map(read)), `kernels.c or build-wasm.sh changed since the last build: ${REBUILD}`).toBe(record.source)
  })

  it('is the artifact that build recorded', () => {
    expect(sha256(read(ARTIFACT)), `kernels.wasm differs from the recorded build: ${REBUILD}`).toBe(record.wasm)
  })

  it('is byte for byte what clang-14 + wasm-ld-14 make of the source', (ctx) => {
    ctx.skip(!hasTool('clang-14') || !hasTool('wasm-ld-14'), 'clang-14 and wasm-ld-14 are not on PATH (Debian: apt-get install clang-14 lld-14)')
    const dir = mkdtempSync(join(tmpdir(), 'mycelium-wasm-'))
    try {
      const build = spawnSync('bash', ['scripts/build-wasm.sh', dir], { cwd: ROOT, encoding: 'utf8' })
      expect(build.status, build.stderr).toBe(0)
      const rebuilt = readFileSync(join(dir, 'kernels.wasm'))
      expect(rebuilt.equals(read(ARTIFACT)), `a rebuild of kernels.c differs from the committed kernels.wasm: ${REBUILD}`).toBe(true)
      expect(readFileSync(join(dir, 'kernels.source.sha256'), 'utf8')).toBe(read(RECORD).toString('utf8'))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
