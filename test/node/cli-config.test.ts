// Settings for `node start`: flags > MYCELIUM_* environment > JSON config file > defaults; unknown
// keys and wrong types are one-line errors naming the key or variable; every command and flag
// has help text.
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Command } from 'commander'
import { afterEach, describe, expect, it } from 'vitest'
import { describeOrigin, mergeSettings } from '../../node/config-sources.ts'
import { nodeConfig } from '../../node/config.ts'
import type { NodeFlags } from '../../node/config.ts'
import { registerDoctorCommand } from '../../node/commands/doctor.ts'
import { registerGenerateCommand } from '../../node/commands/generate.ts'
import { registerRunCommand } from '../../node/commands/run.ts'
import { registerStartCommand } from '../../node/commands/start.ts'
import { registerStatusCommand } from '../../node/commands/status.ts'
import { registerTestnetCommand } from '../../node/commands/testnet.ts'
import { cleanupDaemons, scratch } from './daemons.ts'

const cli = new URL('../../node/cli.ts', import.meta.url).pathname
afterEach(cleanupDaemons)

/** The `node start` command after parsing `args` (its action is not run). */
function parsedStart (args: string[]): Command {
  const program = new Command().exitOverride()
  registerStartCommand(program)
  const start = program.commands.find((c) => c.name() === 'node')!.commands.find((c) => c.name() === 'start')!
  start.action(() => {})
  program.parse(['node', 'start', ...args], { from: 'user' })
  return start
}

function settle (args: string[], env: NodeJS.ProcessEnv): NodeFlags & { logLevel?: string } {
  const start = parsedStart(args)
  const { flags, origins } = mergeSettings(start, start.opts() as NodeFlags & { config?: string }, env)
  try {
    nodeConfig(flags)
  } catch (err) {
    throw describeOrigin(err, origins) as Error
  }
  return flags
}

function file (content: unknown): string {
  const path = join(scratch('mycelium-cfg-'), 'node.json')
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}

function runWithEnv (args: string[], env: NodeJS.ProcessEnv): { status: number | null, stderr: string, stdout: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } })
  return { status: r.status, stderr: r.stderr, stdout: r.stdout }
}

describe('node start settings: flags > env > file > defaults', () => {
  it('takes each setting from the highest source that gives it', () => {
    const path = file({ swarm: 'from-file', 'max-memory': '1G', model: '/dev/null', layers: '0:1', threads: 3, mdns: false, 'log-level': 'debug', bootstrap: '/ip4/10.0.0.1/tcp/1/p2p/12D3KooWHNDUTQF68CFBCzzH6Ffma1QSo9q9yD2HbNhs753XGVwy' })
    const env = { MYCELIUM_SWARM: 'from-env', MYCELIUM_MAX_MEMORY: '2G', MYCELIUM_LISTEN: '/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/0/ws' }
    const flags = settle(['--config', path, '--max-memory', '3G'], env)
    expect(flags.maxMemory).toBe('3G') // flag over env over file
    expect(flags.swarm).toBe('from-env') // env over file
    expect(flags.listen).toEqual(['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws']) // env list, comma-separated
    expect(flags.threads).toBe('3') // file only
    expect(flags.layers).toBe('0:1')
    expect(flags.mdns).toBe(false) // file over the --no-mdns default
    expect(flags.logLevel).toBe('debug') // file over commander's default
    expect(flags.bootstrap).toHaveLength(1) // a single string is a one-element list
    expect(flags.upnp).toBe(true) // default
    const config = nodeConfig(flags)
    expect(config.swarm).toBe('from-env')
    expect(config.model?.maxMemoryBytes).toBe(3 * 1024 ** 3)
  })

  it('MYCELIUM_CONFIG names the file when --config is absent; camelCase keys work too', () => {
    const path = file({ swarm: 'named-by-env', dataDir: '/tmp/x' })
    const flags = settle([], { MYCELIUM_CONFIG: path })
    expect(flags.swarm).toBe('named-by-env')
    expect(flags.dataDir).toBe('/tmp/x')
  })

  it.each([
    [{ swarm: 'a', frobnicate: 1 }, /unknown key "frobnicate"/],
    [{ threads: 'two' }, /"threads": must be a whole number, not "two"/],
    [{ public: 'yes' }, /"public": must be true or false/],
    [{ bootstrap: [1, 2] }, /"bootstrap": must be a string or a list of strings/],
    [{ 'max-memory': -5 }, /"max-memory": must be a size/],
    [[1, 2], /must hold a JSON object/],
    ['{not json', /is not JSON/]
  ])('file %j → one-line error naming the key', (content, message) => {
    expect(() => settle(['--config', file(content)], {})).toThrow(message)
  })

  it('names the variable or key when a value fails validation', () => {
    expect(() => settle([], { MYCELIUM_SWARM: 'Bad_Name' })).toThrow(/^MYCELIUM_SWARM \(--swarm: invalid swarm name/)
    expect(() => settle([], { MYCELIUM_MDNS: 'maybe' })).toThrow(/MYCELIUM_MDNS: must be true or false, not "maybe"/)
    expect(() => settle([], { MYCELIUM_THREADS: 'two' })).toThrow(/MYCELIUM_THREADS: must be a whole number/)
    expect(() => settle(['--config', file({ 'max-memory': 'lots' }), '--model', '/dev/null'], {})).toThrow(/config file .*: "max-memory" \(--max-memory: not a size/)
    expect(() => settle([], { MYCELIUM_LAYERS: '0:2' })).toThrow(/MYCELIUM_LAYERS \(--layers needs --model/)
    expect(() => settle(['--config', '/nonexistent/node.json'], {})).toThrow(/--config: cannot read \/nonexistent\/node.json \(ENOENT\)/)
  })

  it('the CLI prints these errors as one line and exits 1', () => {
    const dir = scratch('mycelium-cfg-')
    for (const [args, env, message] of [
      [['--config', file({ nope: true })], {}, /^mycelium: config file .*: unknown key "nope" \(known: listen, bootstrap/],
      [[], { MYCELIUM_MAX_MEMORY: 'x', MYCELIUM_MODEL: '/dev/null' }, /^mycelium: MYCELIUM_MAX_MEMORY \(--max-memory: not a size/]
    ] as const) {
      const r = runWithEnv(['node', 'start', '--data-dir', dir, ...args], env)
      expect(r.status).toBe(1)
      expect(r.stderr).toMatch(message)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
    }
  })

  it('a real daemon takes its swarm from the environment over the file, and the rest from the file', async () => {
    const dir = scratch('mycelium-cfg-')
    const path = file({ swarm: 'from-file', public: true, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, upnp: false })
    const child = spawn(process.execPath, [cli, 'node', 'start', '--config', path], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MYCELIUM_SWARM: 'from-env', MYCELIUM_DATA_DIR: dir } })
    try {
      const events: Array<Record<string, unknown>> = []
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
        child.once('exit', (code) => { reject(new Error(`daemon exited with ${code}: ${stderr}`)) })
        createInterface({ input: child.stdout }).on('line', (line) => {
          const record = JSON.parse(line) as Record<string, unknown>
          events.push(record)
          if (record.event === 'ready') resolve(record)
        })
      })
      expect(ready.swarm).toBe('from-env')
      expect(ready.control).toBe(join(dir, 'control.sock'))
      expect((ready.listen as string[]).every((a) => a.startsWith('/ip4/127.0.0.1/tcp/'))).toBe(true)
      expect(ready.public).toBe(true) // from the file
      expect(events.length).toBeGreaterThan(0)
    } finally {
      child.kill('SIGKILL')
    }
  })
})

describe('help', () => {
  it('every command and every flag has help text', () => {
    const program = new Command()
    for (const register of [registerRunCommand, registerStartCommand, registerDoctorCommand, registerTestnetCommand, registerStatusCommand, registerGenerateCommand]) register(program)
    const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)]
    const commands = all(program).slice(1)
    expect(commands.map((c) => c.name()).sort()).toEqual(['doctor', 'generate', 'node', 'run', 'start', 'status', 'testnet'])
    for (const c of commands) {
      expect(c.description(), c.name()).not.toBe('')
      for (const o of c.options) expect(o.description, `${c.name()} ${o.long}`).not.toBe('')
    }
    for (const args of [['--help'], ['testnet', '--help'], ['generate', '--help'], ['status', '--help'], ['node', 'start', '--help']]) {
      const r = runWithEnv(args, {})
      expect(r.status, args.join(' ')).toBe(0)
      expect(r.stdout).toMatch(/Usage: mycelium/)
    }
    expect(runWithEnv(['node', 'start', '--help'], {}).stdout).toMatch(/Settings come from, highest first: flags, environment variables MYCELIUM_/)
  })
})
