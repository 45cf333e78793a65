// Where `node start` (and `doctor`) settings come from, highest first:
//   1. command-line flags,
//   2. environment variables MYCELIUM_<FLAG> (e.g. MYCELIUM_MAX_MEMORY for --max-memory),
//   3. a JSON config file (--config PATH or MYCELIUM_CONFIG), keys named like the flags
//      ("max-memory" or "maxMemory"),
//   4. the built-in defaults.
// The result is the same flag object commander hands over, so nodeConfig validates it exactly as
// it validates flags. Unknown file keys and values of the wrong type are one-line ConfigErrors
// naming the key (or the variable); values that pass here but fail nodeConfig's checks are
// reported with where they came from (`describeOrigin`).
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { ConfigError } from './errors.ts'

type Kind = 'string' | 'strings' | 'boolean' | 'size' | 'int'

/** Every setting a file or the environment may give, by its commander key (camelCase flag name). */
export const CONFIG_KEYS: Readonly<Record<string, Kind>> = {
  listen: 'strings',
  bootstrap: 'strings',
  announce: 'strings',
  public: 'boolean',
  swarm: 'string',
  dataDir: 'string',
  identity: 'string',
  mdns: 'boolean',
  upnp: 'boolean',
  dcutr: 'boolean',
  model: 'string',
  dtype: 'string',
  maxMemory: 'size',
  layers: 'string',
  threads: 'int',
  logLevel: 'string',
  apiPort: 'int',
  apiHost: 'string'
}

/** The environment variable that names the config file when --config is not given. */
export const CONFIG_ENV = 'MYCELIUM_CONFIG'

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
/** `maxMemory` → `MYCELIUM_MAX_MEMORY`. */
export const envName = (key: string): string => `MYCELIUM_${kebab(key).replace(/-/g, '_').toUpperCase()}`
const camel = (name: string): string => name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())

/** Where a setting's value came from, for error messages. */
export type Origin = { source: 'cli' } | { source: 'env', name: string } | { source: 'file', path: string, key: string } | { source: 'default' }

export interface MergedSettings<F> {
  flags: F
  origins: Map<string, Origin>
}

function typeError (where: string, kind: Kind, value: unknown): ConfigError {
  const want = { string: 'a string', strings: 'a string or a list of strings', boolean: 'true or false', size: 'a size (bytes, or a string such as "512M")', int: 'a whole number' }[kind]
  return new ConfigError(`${where}: must be ${want}, not ${JSON.stringify(value)}`)
}

/** A file value of the right JSON type, as the string(s)/boolean commander would have given. */
function fromFile (where: string, kind: Kind, value: unknown): string | string[] | boolean {
  switch (kind) {
    case 'string':
      if (typeof value !== 'string') throw typeError(where, kind, value)
      return value
    case 'strings':
      if (typeof value === 'string') return [value]
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw typeError(where, kind, value)
      return value as string[]
    case 'boolean':
      if (typeof value !== 'boolean') throw typeError(where, kind, value)
      return value
    case 'size':
      if (typeof value === 'string') return value
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw typeError(where, kind, value)
      return String(value)
    case 'int':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw typeError(where, kind, value)
      return String(value)
  }
}

/** An environment value (always a string) checked the same way. Lists: comma or space separated. */
function fromEnv (name: string, kind: Kind, value: string): string | string[] | boolean {
  switch (kind) {
    case 'strings':
      return value.split(/[\s,]+/).filter((v) => v !== '')
    case 'boolean': {
      const v = value.trim().toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(v)) return true
      if (['0', 'false', 'no', 'off'].includes(v)) return false
      throw typeError(name, kind, value)
    }
    case 'int':
      if (!/^\s*-?\d+\s*$/.test(value)) throw typeError(name, kind, value)
      return value.trim()
    default:
      return value
  }
}

/** Reads and checks a JSON config file: an object whose keys are known settings. */
export function readConfigFile (path: string): Map<string, { key: string, value: string | string[] | boolean }> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`--config: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`--config: ${path} is not JSON (${(err as Error).message})`, { cause: err })
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`--config: ${path} must hold a JSON object of settings`)
  const out = new Map<string, { key: string, value: string | string[] | boolean }>()
  for (const [key, value] of Object.entries(parsed)) {
    const name = camel(key)
    const kind = CONFIG_KEYS[name]
    if (kind === undefined || !Object.hasOwn(CONFIG_KEYS, name)) {
      throw new ConfigError(`config file ${path}: unknown key "${key}" (known: ${Object.keys(CONFIG_KEYS).map(kebab).join(', ')})`)
    }
    out.set(name, { key, value: fromFile(`config file ${path}: "${key}"`, kind, value) })
  }
  return out
}

/**
 * Folds environment variables and the config file under the flags the user typed. `command` is
 * the commander command after parsing (it knows which values came from the command line);
 * `flags` its option values. Keys the command does not define are ignored (doctor has no --model).
 */
export function mergeSettings<F extends object> (command: Command, flags: F & { config?: string }, env: NodeJS.ProcessEnv = process.env, only?: string[]): MergedSettings<F> {
  const defined = new Set(command.options.map((o) => o.attributeName()).filter((k) => only === undefined || only.includes(k)))
  const filePath = flags.config ?? env[CONFIG_ENV]
  const file = filePath === undefined || filePath === '' ? new Map() : readConfigFile(resolve(filePath))
  const merged: Record<string, unknown> = { ...flags }
  delete merged.config
  const origins = new Map<string, Origin>()
  for (const [key, kind] of Object.entries(CONFIG_KEYS)) {
    if (!defined.has(key)) continue
    if (command.getOptionValueSource(key) === 'cli') { origins.set(key, { source: 'cli' }); continue }
    const name = envName(key)
    const fromEnvironment = env[name]
    if (fromEnvironment !== undefined && fromEnvironment !== '') {
      merged[key] = fromEnv(name, kind, fromEnvironment)
      origins.set(key, { source: 'env', name })
      continue
    }
    const entry = file.get(key)
    if (entry !== undefined) {
      merged[key] = entry.value
      origins.set(key, { source: 'file', path: resolve(filePath as string), key: entry.key })
      continue
    }
    origins.set(key, { source: 'default' })
  }
  for (const key of file.keys()) {
    if (!defined.has(key)) throw new ConfigError(`config file ${resolve(filePath as string)}: "${kebab(key)}" is not a setting of \`${command.name()}\``)
  }
  return { flags: merged as F, origins }
}

/**
 * A ConfigError from nodeConfig names the flag (`--swarm: …`); when that value came from the
 * environment or the file, say so: `MYCELIUM_SWARM (--swarm): …`.
 */
export function describeOrigin (err: unknown, origins: Map<string, Origin>): unknown {
  if (!(err instanceof ConfigError)) return err
  const m = /^--([a-z-]+)(?::| needs)/.exec(err.message)
  const origin = m === null ? undefined : origins.get(camel(m[1]))
  if (origin === undefined || origin.source === 'cli' || origin.source === 'default') return err
  const where = origin.source === 'env' ? origin.name : `config file ${origin.path}: "${origin.key}"`
  return new ConfigError(`${where} (${err.message})`, { cause: err })
}

/** Help text shared by the commands that read settings. */
export const SETTINGS_HELP = `
Settings come from, highest first: flags, environment variables MYCELIUM_<FLAG> (e.g.
MYCELIUM_SWARM, MYCELIUM_BOOTSTRAP, MYCELIUM_MODEL, MYCELIUM_LAYERS, MYCELIUM_MAX_MEMORY,
MYCELIUM_LISTEN, MYCELIUM_DATA_DIR, MYCELIUM_API_PORT; lists comma- or space-separated, booleans
true/false), a JSON config file (--config PATH or MYCELIUM_CONFIG; keys named like the flags,
e.g. {"swarm": "demo", "max-memory": "4G", "bootstrap": ["/ip4/…/p2p/…"]}), then the defaults.
Boolean flags written --no-X (mdns, upnp) take true/false in the file and environment.
`
