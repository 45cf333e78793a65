// Test harness for `mycelium` daemons as real child processes: scratch data directories, start on
// loopback and wait for a log event (never a sleep), run one-shot CLI commands, and clean up every
// child and directory after each test (`cleanupDaemons` in afterEach).
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const cli = new URL('../../node/cli.ts', import.meta.url).pathname
const children: ChildProcess[] = []
const dirs: string[] = []

/** A fresh temporary directory, removed by cleanupDaemons. */
export function scratch (prefix = 'mycelium-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(d)
  return d
}

/** Runs `mycelium ARGS` to completion. */
export function runCli (args: string[]): { status: number | null, stderr: string, stdout: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000 })
  return { status: r.status, stderr: r.stderr, stdout: r.stdout }
}

export interface Started { child: ChildProcess, ready: Record<string, unknown>, events: Array<Record<string, unknown>>, dir: string }

/** The daemon's `ready` log record (`Started.ready` is the record it was started `until`). */
export function readyRecord (d: Started): Record<string, unknown> {
  return d.events.find((e) => e.event === 'ready') as Record<string, unknown>
}

/** The daemon's plain-TCP listen address from its ready line (ends in /p2p/<id>). */
export function tcpAddr (d: Started): string {
  return (readyRecord(d).listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws')) as string
}

/**
 * `mycelium node start` on loopback (no mDNS, no UPnP) with data directory `dir`; resolves on its
 * ready line, or on the first log line whose event is `until`. Every log record is kept in `events`.
 */
export async function startDaemon (dir: string, extra: string[], until = 'ready'): Promise<Started> {
  const child = spawn(process.execPath, [cli, 'node', 'start', '--data-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--no-upnp', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  const events: Array<Record<string, unknown>> = []
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`daemon exited with ${code}`)) })
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const record = JSON.parse(line) as Record<string, unknown>
      events.push(record)
      if (record.event === until) resolve(record)
    })
  })
  return { child, ready, events, dir }
}

/** SIGTERM, resolving with the exit code. */
export async function stopDaemon (child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  return await exited
}

/** Kills every child still running and removes every scratch directory (call in afterEach). */
export function cleanupDaemons (): void {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
}

/**
 * Polls `fn` until it returns a value (not undefined) and returns it; errors count as "not yet".
 * Fails the test with `what` and the last error once `timeoutMs` passes. Never a fixed sleep.
 */
export async function pollUntil<T> (what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, stepMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    await new Promise((resolve) => setTimeout(resolve, stepMs))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last error: ${String(last)})`)
}
