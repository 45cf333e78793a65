// Download progress on stderr: a cli-progress bar on a terminal, two plain lines (start, done)
// otherwise, so logs and CI output stay readable. Model *load* has no bar: the engine's
// loadShard/loadModel report no progress (they read each layer's bytes in one call).
import { SingleBar } from 'cli-progress'
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
