// Other processes on the machine: on a shared 2-core box a concurrent test run halves our figures
// and makes llama.cpp's spinning threads collapse. Two defences, both from Linux /proc/stat:
// - before a measurement, sample how busy the CPUs are and wait (bounded) for them to go quiet;
// - during it, count the CPU time the whole machine spent busy and subtract the child's own, which
//   gives the cores other processes took while we measured; the caller retries a run that shared
//   the machine. Elsewhere than Linux both report `undefined` and nothing waits.
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

const SAMPLE_MS = 500
const CLOCK_TICKS_PER_S = 100 // USER_HZ, the unit of /proc/stat; 100 on every Linux build that matters

interface CpuTimes { busy: number, total: number }

function cpuTimes (): CpuTimes | undefined {
  let stat: string
  try {
    stat = readFileSync('/proc/stat', 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined // not Linux: no counters
    throw err
  }
  // cpu user nice system idle iowait irq softirq steal ...: busy = user + nice + system + irq + softirq.
  const f = stat.split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
  const busy = f[0] + f[1] + f[2] + f[5] + f[6]
  return { busy, total: busy + f[3] + f[4] + (f[7] ?? 0) }
}

/** CPU-seconds the whole machine has spent busy since boot (a counter: take differences). */
export function cpuBusySeconds (): number | undefined {
  const t = cpuTimes()
  return t === undefined ? undefined : t.busy / CLOCK_TICKS_PER_S
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
