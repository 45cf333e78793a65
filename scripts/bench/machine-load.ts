// Other processes on the machine: on a shared 2-core box a concurrent test run halves our figures
// and makes llama.cpp's spinning threads collapse. Before each measurement the benchmark samples
// how busy the CPUs are (Linux /proc/stat) and can wait, up to a bound, for them to go quiet; the
// busy fraction it saw is kept with every result so a reader can judge it.
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

const SAMPLE_MS = 500

interface CpuTimes { busy: number, total: number }

function cpuTimes (): CpuTimes | undefined {
  let stat: string
  try {
    stat = readFileSync('/proc/stat', 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined // not Linux: no counters
    throw err
  }
  const fields = stat.split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0) // idle + iowait
  const total = fields.reduce((a, b) => a + b, 0)
  return { busy: total - idle, total }
}

/** Fraction (0..1) of all CPU time spent busy over `sampleMs`, or undefined where unknown. */
export async function cpuBusy (sampleMs = SAMPLE_MS): Promise<number | undefined> {
  const a = cpuTimes()
  await sleep(sampleMs)
  const b = cpuTimes()
  if (a === undefined || b === undefined || b.total === a.total) return undefined
  return (b.busy - a.busy) / (b.total - a.total)
}

export interface IdleWait { busy?: number, waitedMs: number }

/** Waits until the CPUs are at most `threshold` busy, or `maxWaitMs` has passed. */
export async function waitForIdle (threshold: number, maxWaitMs: number): Promise<IdleWait> {
  const started = performance.now()
  for (;;) {
    const busy = await cpuBusy()
    const waitedMs = performance.now() - started
    if (busy === undefined || busy <= threshold || waitedMs >= maxWaitMs) return { busy, waitedMs }
  }
}
