// The testnet's child processes: `mycelium node start` daemons, each in its own process group
// with an IPC channel (a daemon stops when its launcher dies, even by SIGKILL), its JSON log lines
// copied to a file and watched for events. `stopAll` SIGTERMs every group and SIGKILLs what is
// left after a grace period; an exit handler SIGKILLs anything still running however the
// launcher ends.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { createInterface } from 'node:readline'

export interface Daemon {
  name: string
  child: ChildProcess
  pid: number
  logFile: string
  /** Resolves with the first log record whose `event` is `event` (rejects if the daemon exits first). */
  waitFor: (event: string, signal?: AbortSignal) => Promise<Record<string, unknown>>
  /** The latest log record whose `event` is `event`, if any. */
  latest: (event: string) => Record<string, unknown> | undefined
  /** The last few stderr lines (for the error message when it dies). */
  stderrTail: () => string
}

export interface Children {
  start: (name: string, args: string[], logFile: string) => Daemon
  all: () => Daemon[]
  /** Called once when a daemon exits while we are not stopping. */
  onUnexpectedExit: (listener: (d: Daemon, code: number | null, signal: NodeJS.Signals | null) => void) => void
  /** SIGTERM to every process group, SIGKILL after `graceMs`; resolves when all exited. */
  stopAll: (graceMs: number) => Promise<void>
}

const STDERR_TAIL_LINES = 8

function killGroup (pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

export function childProcesses (cli: string, env: NodeJS.ProcessEnv = process.env): Children {
  const daemons: Daemon[] = []
  const running = new Set<Daemon>()
  const logs: WriteStream[] = []
  let stopping = false
  let unexpected: ((d: Daemon, code: number | null, signal: NodeJS.Signals | null) => void) | undefined
  // however this process ends (exception, process.exit), no daemon outlives it
  process.on('exit', () => { for (const d of running) killGroup(d.pid, 'SIGKILL') })

  return {
    start: (name, args, logFile) => {
      const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true, env })
      if (child.pid === undefined) throw new Error(`could not start ${name}`)
      const log = createWriteStream(logFile)
      logs.push(log)
      const waiters = new Map<string, Array<(r: Record<string, unknown>) => void>>()
      const seen = new Map<string, Record<string, unknown>>()
      const latest = new Map<string, Record<string, unknown>>()
      const stderr: string[] = []
      let exited: Error | undefined
      const failed: Array<(err: Error) => void> = []
      createInterface({ input: child.stdout! }).on('line', (line) => {
        log.write(line + '\n')
        let record: Record<string, unknown>
        try {
          record = JSON.parse(line) as Record<string, unknown>
        } catch {
          return // not a log record (should not happen: the daemon writes pino lines only)
        }
        const event = typeof record.event === 'string' ? record.event : undefined
        if (event === undefined) return
        if (!seen.has(event)) seen.set(event, record)
        latest.set(event, record)
        for (const resolve of waiters.get(event) ?? []) resolve(record)
        waiters.delete(event)
      })
      createInterface({ input: child.stderr! }).on('line', (line) => {
        log.write(`[stderr] ${line}\n`)
        stderr.push(line)
        if (stderr.length > STDERR_TAIL_LINES) stderr.shift()
      })
      const daemon: Daemon = {
        name,
        child,
        pid: child.pid,
        logFile,
        waitFor: async (event, signal) => {
          const record = seen.get(event)
          if (record !== undefined) return record
          if (exited !== undefined) throw exited
          return await new Promise((resolve, reject) => {
            const list = waiters.get(event) ?? []
            list.push(resolve)
            waiters.set(event, list)
            failed.push(reject)
            signal?.addEventListener('abort', () => { reject(signal.reason as Error) }, { once: true })
          })
        },
        latest: (event) => latest.get(event),
        stderrTail: () => stderr.join('\n')
      }
      child.on('exit', (code, signal) => {
        running.delete(daemon)
        exited = new Error(`${name} exited (${signal ?? `code ${code}`})${stderr.length > 0 ? `: ${stderr.join(' | ')}` : ''}; log: ${logFile}`)
        for (const reject of failed) reject(exited)
        if (!stopping) unexpected?.(daemon, code, signal)
      })
      daemons.push(daemon)
      running.add(daemon)
      return daemon
    },
    all: () => [...daemons],
    onUnexpectedExit: (listener) => { unexpected = listener },
    stopAll: async (graceMs) => {
      stopping = true
      const exits = [...running].map(async (d) => await new Promise<void>((resolve) => {
        if (d.child.exitCode !== null || d.child.signalCode !== null) { resolve(); return }
        d.child.once('exit', () => { resolve() })
      }))
      for (const d of running) killGroup(d.pid, 'SIGTERM')
      const timer = setTimeout(() => { for (const d of running) killGroup(d.pid, 'SIGKILL') }, graceMs)
      await Promise.all(exits)
      clearTimeout(timer)
      await Promise.all(logs.map(async (l) => await new Promise<void>((resolve) => { l.end(resolve) })))
    }
  }
}
