// Download and load progress on stderr: a cli-progress bar on a terminal, plain lines (start,
// done) otherwise, so logs and CI output stay readable. Load progress comes from the engine's
// `onProgress(bytesRead, totalBytes)` (ShardOptions), called after each layer's weights.
import { SingleBar } from 'cli-progress'
import type { Logger } from 'pino'
import type { DownloadProgress } from './model-cache.ts'

const MiB = 1024 * 1024

/** A progress callback for resolveModel that renders to `stream` (default stderr). */
export function downloadProgress (stream: NodeJS.WriteStream = process.stderr): (p: DownloadProgress) => void {
  let bar: SingleBar | undefined
  let current = ''
  return (p) => {
    if (p.file !== current) {
      current = p.file
      if (stream.isTTY === true) {
        bar = new SingleBar({ stream, format: `downloading ${p.file} [{bar}] {percentage}% {value}/{total} MiB {eta_formatted}`, hideCursor: true, clearOnComplete: false })
        bar.start(Math.max(1, Math.ceil(p.total / MiB)), 0)
      } else {
        stream.write(`downloading ${p.file} (${(p.total / MiB).toFixed(1)} MiB)\n`)
      }
    }
    bar?.update(Math.min(Math.ceil(p.total / MiB), Math.floor(p.bytes / MiB)))
    if (p.done) {
      bar?.update(Math.ceil(p.total / MiB))
      bar?.stop()
      bar = undefined
      if (stream.isTTY !== true) stream.write(`downloaded ${p.file}\n`)
    }
  }
}

/**
 * An `onProgress` for the engine's loadShard/loadModel: a bar on stderr when it is a terminal;
 * otherwise one line when the load starts and one when it ends — a pino `loading` / `loaded`
 * event when `log` is given (the daemon), else plain lines on `stream` (`run`).
 */
export function loadProgress (label: string, options: { log?: Logger, stream?: NodeJS.WriteStream } = {}): (bytesRead: number, totalBytes: number) => void {
  const stream = options.stream ?? process.stderr
  let bar: SingleBar | undefined
  let started = false
  let finished = false
  const t0 = performance.now()
  return (bytes, total) => {
    if (finished) return
    const mib = (n: number): number => Math.round((n / MiB) * 10) / 10
    if (!started) {
      started = true
      if (stream.isTTY === true) {
        bar = new SingleBar({ stream, format: `loading ${label} [{bar}] {percentage}% {value}/{total} MiB`, hideCursor: true, clearOnComplete: false })
        bar.start(Math.max(0.1, mib(total)), 0)
      } else if (options.log !== undefined) {
        options.log.info({ event: 'loading', what: label, totalBytes: total }, `loading ${label} (${mib(total)} MiB)`)
      } else {
        stream.write(`loading ${label} (${mib(total)} MiB)\n`)
      }
    }
    bar?.update(mib(Math.min(bytes, total)))
    if (bytes >= total) {
      finished = true
      bar?.update(Math.max(0.1, mib(total)))
      bar?.stop()
      bar = undefined
      const ms = Math.round(performance.now() - t0)
      if (stream.isTTY === true) return
      if (options.log !== undefined) options.log.info({ event: 'loaded', what: label, totalBytes: total, ms }, `loaded ${label} in ${ms} ms`)
      else stream.write(`loaded ${label} in ${ms} ms\n`)
    }
  }
}
