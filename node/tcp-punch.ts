// TCP simultaneous open from a fixed local port. Node cannot connect *from* its listening port
// (EADDRINUSE: no SO_REUSEPORT for outgoing sockets), but it can from any free port, and a
// port-preserving NAT maps that port unchanged — which is all a TCP hole punch needs.
import { connect, createServer } from 'node:net'
import type { Socket } from 'node:net'
import { PUNCH_CONNECT_WINDOW_MS, PUNCH_RETRY_MS } from './constants.ts'

/** A local TCP port that is free right now (the OS picks it). */
export async function freeLocalPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '0.0.0.0', () => { resolve() })
  })
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  return port
}

/** Connects from `localPort` to `host:port` until it succeeds or the window closes. */
export async function simultaneousOpen (localPort: number, host: string, port: number, options: { signal?: AbortSignal, windowMs?: number } = {}): Promise<Socket> {
  const deadline = Date.now() + (options.windowMs ?? PUNCH_CONNECT_WINDOW_MS)
  let lastError: Error | undefined
  while (Date.now() < deadline && options.signal?.aborted !== true) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect({ host, port, localPort, localAddress: '0.0.0.0', timeout: Math.max(1, deadline - Date.now()) })
        socket.once('connect', () => {
          socket.setTimeout(0)
          socket.removeAllListeners('error')
          socket.setNoDelay(true)
          resolve(socket)
        })
        socket.once('timeout', () => { socket.destroy(); reject(new Error('connect timed out')) })
        socket.once('error', (err) => { socket.destroy(); reject(err) })
      })
    } catch (err) {
      lastError = err as Error
      await new Promise((resolve) => setTimeout(resolve, PUNCH_RETRY_MS))
    }
  }
  throw new Error(`hole punch to ${host}:${port} from port ${localPort} failed: ${lastError?.message ?? 'aborted'}`, { cause: lastError })
}
