// Transparent huge pages. Decode streams every weight once per token, so TLB misses matter: with
// 4 KiB pages a Qwen2.5-0.5B q8_0 token touches ~136k pages. V8 gives no way to madvise a
// WebAssembly.Memory, so our weights get huge pages only when the system's THP mode is `always`;
// llama.cpp's mmap of the GGUF gets large page-cache folios either way. The benchmark records the
// mode and, with --thp (root), sets it for the run and puts the old one back when it exits.
import { readFileSync, writeFileSync } from 'node:fs'

const THP = '/sys/kernel/mm/transparent_hugepage/enabled'
export const THP_MODES = ['always', 'madvise', 'never'] as const
export type ThpMode = typeof THP_MODES[number]

/** The current mode (the bracketed word of the sysfs file), or undefined off Linux. */
export function thpMode (): ThpMode | undefined {
  try {
    const m = /\[(\w+)\]/.exec(readFileSync(THP, 'utf8'))
    return m === null ? undefined : m[1] as ThpMode
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Sets the mode for this process's lifetime; the previous one is restored on exit. */
export function setThpForRun (mode: ThpMode): { previous: ThpMode | undefined } {
  const previous = thpMode()
  if (previous === undefined) throw new Error(`--thp: ${THP} does not exist (not Linux, or no THP support)`)
  if (previous === mode) return { previous }
  try {
    writeFileSync(THP, mode)
  } catch (err) {
    throw new Error(`--thp: cannot write ${THP} (${(err as Error).message}); it needs root`, { cause: err })
  }
  const restore = () => { writeFileSync(THP, previous) }
  process.on('exit', restore)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130))
  return { previous }
}
