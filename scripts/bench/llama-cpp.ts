// llama.cpp as the side-by-side reference, through node-llama-cpp installed on demand into its
// own prefix, outside the project's dependencies. The lightest install that works offline:
// `--omit=optional` drops the ~700 MB of optional GPU and foreign-platform builds, and the CPU
// build for this platform (itself an optional dependency of node-llama-cpp) is named explicitly so
// it is installed as a regular dependency of the prefix. `--ignore-scripts`: the postinstall would
// try to download or build; `getLlama({ gpu: false, build: 'never' })` loads the prebuilt binary.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const NODE_LLAMA_CPP_VERSION = '3.22.1'

export interface LlamaCppInstall {
  ok: boolean
  /** node-llama-cpp's ESM entry (a path), when ok. */
  entry?: string
  version?: string
  binaryPackage?: string
  /** Why it is not available, when not ok. */
  reason?: string
  installedNow?: boolean
}

/** node-llama-cpp's prebuilt CPU package for this platform, or undefined when it ships none. */
export function binaryPackageName (platform: string = process.platform, arch: string = process.arch): string | undefined {
  const names: Record<string, string> = {
    'linux-x64': 'linux-x64',
    'linux-arm64': 'linux-arm64',
    'linux-arm': 'linux-armv7l',
    'darwin-arm64': 'mac-arm64-metal',
    'darwin-x64': 'mac-x64',
    'win32-x64': 'win-x64',
    'win32-arm64': 'win-arm64'
  }
  const name = names[`${platform}-${arch}`]
  return name === undefined ? undefined : `@node-llama-cpp/${name}`
}

/** Installs node-llama-cpp into `prefix` unless it is already there; never throws. */
export function ensureLlamaCpp (prefix: string, log: (line: string) => void): LlamaCppInstall {
  const binaryPackage = binaryPackageName()
  if (binaryPackage === undefined) {
    return { ok: false, reason: `node-llama-cpp ships no prebuilt binary for ${process.platform}-${process.arch}` }
  }
  const found = installed(prefix, binaryPackage)
  if (found.ok) return { ...found, installedNow: false }
  mkdirSync(prefix, { recursive: true })
  // A package.json of its own makes `prefix` the project root, so npm never walks up into ours.
  const manifest = join(prefix, 'package.json')
  if (!existsSync(manifest)) writeFileSync(manifest, JSON.stringify({ name: 'mycelium-bench-llama-cpp', private: true }, null, 2) + '\n')
  const args = ['install', '--prefix', prefix, `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, `${binaryPackage}@${NODE_LLAMA_CPP_VERSION}`,
    '--no-save', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error']
  log(`installing node-llama-cpp ${NODE_LLAMA_CPP_VERSION} + ${binaryPackage} into ${prefix} (about 85 MB) ...`)
  try {
    const npmCli = process.env.npm_execpath
    if (npmCli !== undefined && npmCli.endsWith('.js')) {
      execFileSync(process.execPath, [npmCli, ...args], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 })
    } else {
      execFileSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 })
    }
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim()
    return { ok: false, reason: `npm install failed: ${stderr !== undefined && stderr !== '' ? stderr.split('\n').slice(-3).join(' | ') : (err as Error).message}` }
  }
  const after = installed(prefix, binaryPackage)
  return after.ok ? { ...after, installedNow: true } : after
}

function installed (prefix: string, binaryPackage: string): LlamaCppInstall {
  const pkgDir = join(prefix, 'node_modules', 'node-llama-cpp')
  const binDir = join(prefix, 'node_modules', ...binaryPackage.split('/'))
  if (!existsSync(join(pkgDir, 'package.json'))) return { ok: false, reason: `node-llama-cpp is not installed in ${prefix}` }
  if (!existsSync(join(binDir, 'package.json'))) return { ok: false, reason: `${binaryPackage} is not installed in ${prefix}` }
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string, exports?: Record<string, { import?: string }> }
  if (pkg.version !== NODE_LLAMA_CPP_VERSION) return { ok: false, reason: `node-llama-cpp ${pkg.version} found, ${NODE_LLAMA_CPP_VERSION} wanted` }
  const entry = join(pkgDir, pkg.exports?.['.']?.import ?? 'dist/index.js')
  return { ok: true, entry, version: pkg.version, binaryPackage }
}
