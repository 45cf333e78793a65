// One measurement = one fresh child process, so that its peak RSS (getrusage maxRSS) belongs to
// that configuration alone and nothing (JIT state, freed-but-kept heap, worker threads) leaks
// from one configuration into the next. The parent passes the job as JSON in argv[2]; the child
// prints exactly one line `RESULT_MARKER <json>` on stdout; anything else it prints is kept as log.
import { spawn } from 'node:child_process'

const RESULT_MARKER = '@@bench-result@@'

export interface ChildRun<T> {
  ok: boolean
  result?: T
  error?: string
  /** stderr (and non-result stdout) of the child, for the JSON report when it failed. */
  log: string
  wallMs: number
}

/** Runs `node <script> <json>` with the same Node binary; kills it (only it) after `timeoutMs`. */
export function runChild<T> (script: string, input: unknown, timeoutMs: number, env: Record<string, string> = {}): Promise<ChildRun<T>> {
  const started = performance.now()
  return new Promise((resolve) => {
    // --expose-gc lets a child measure steady memory after a full collection.
    const child = spawn(process.execPath, ['--expose-gc', script, JSON.stringify(input)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env }
    })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ ok: false, error: err.message, log: stderr, wallMs: performance.now() - started })
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const wallMs = performance.now() - started
      const lines = stdout.split('\n')
      const line = lines.find((l) => l.startsWith(RESULT_MARKER))
      const log = (lines.filter((l) => !l.startsWith(RESULT_MARKER)).join('\n') + '\n' + stderr).trim()
      if (line !== undefined && code === 0) {
        resolve({ ok: true, result: JSON.parse(line.slice(RESULT_MARKER.length)) as T, log, wallMs })
        return
      }
      const why = timedOut ? `timed out after ${timeoutMs} ms` : `exited with ${signal ?? code}`
      resolve({ ok: false, error: `${why}: ${errorLine(stderr) ?? 'no output'}`, log, wallMs })
    })
  })
}

/** The line of a child's stderr that says what went wrong: the first `…Error: …`, else the last. */
function errorLine (text: string): string | undefined {
  const lines = text.trim().split('\n').filter((l) => l.trim() !== '')
  return lines.find((l) => /^\w*Error\b/.test(l.trim())) ?? lines.at(-1)
}

/** In a child: the job the parent passed. */
export function readChildInput<T> (): T {
  const arg = process.argv[2]
  if (arg === undefined) throw new Error('expected the job as JSON in argv[2]')
  return JSON.parse(arg) as T
}

/** In a child: hands the result to the parent (peak RSS is read by the caller just before). */
export function emitResult (result: unknown): void {
  process.stdout.write(`${RESULT_MARKER}${JSON.stringify(result)}\n`)
}

/** Peak resident set size of this process so far, in bytes (maxRSS is reported in KiB). */
export function peakRssBytes (): number {
  return process.resourceUsage().maxRSS * 1024
}

/** CPU time (user + system, all threads) of this process so far, in seconds. */
export function cpuSeconds (): number {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1e6
}
