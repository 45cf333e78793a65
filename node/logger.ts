// Structured logs of the daemon: pino, one JSON object per line on stdout, written synchronously
// so the `ready` line is out before anyone waits on it.
import { pino } from 'pino'
import type { Logger } from 'pino'

export function daemonLogger (level: string = 'info'): Logger {
  return pino({ level, base: { name: 'mycelium' } }, pino.destination({ dest: 1, sync: true }))
}
